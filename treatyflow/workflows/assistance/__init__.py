"""The request for assistance (SCO 2010, art. 5–7) as a pure lifecycle.

``state`` holds the models, ``rules`` what the treaty allows, ``lifecycle`` the
transitions and deadlines, ``operator`` an operator's steps, ``views`` what the parties and
operators are shown; ``treatyflow.workflows.lifecycle`` re-exports the names others use.
"""
