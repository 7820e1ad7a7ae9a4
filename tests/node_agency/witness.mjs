// A party's witness of the hub's record, from docs/reference/evidence.md ("How a witness
// checks") alone: it keeps the last checkpoint the hub sent and takes a newer one only if
// RFC 9162's consistency proof from the held size verifies (verify-evidence.mjs's
// verifyConsistency). A failed check is a fork: reported with both signed checkpoints and
// the proof, and the held checkpoint stays.
//
//   node witness.mjs DELIVERIES_FILE DIRECTORY_FILE   (a JSON list of {type, body}; prints
//   one JSON line per delivery with its outcome: the check without a broker)

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { Directory, HUB, VerifyError, jsonObject, verifyCompact } from './agency.mjs';
import { verifyConsistency } from './verify-evidence.mjs';

export const TYPE_CHECKPOINT = 'record_checkpoint';
export const TYPE_CONSISTENCY_PROOF = 'consistency_proof';
export const RECORD_TYPES = [TYPE_CHECKPOINT, TYPE_CONSISTENCY_PROOF];
const HEX64 = /^[0-9a-f]{64}$/;
const LOG = 'treatyflow-record';

export class Witness {
  constructor() {
    this.held = null; // {jws, checkpoint: {log, tree_size, root_hash, time}}
    this.fork = null; // the first fork: {reason, held, offered, from_tree_size, consistency_proof}
    this.wanted = null; // {from_tree_size, to_tree_size}: the proof to ask for
  }

  /** One record_checkpoint or consistency_proof delivery: {outcome, reason?}. */
  async take(body, directory) {
    let message;
    let offered;
    try {
      message = (await verifyCompact(body, directory, { signer: HUB })).envelope;
      if (!RECORD_TYPES.includes(message.kind) || message.sender !== HUB) throw new VerifyError('malformed', `kind ${message.kind} from ${message.sender} is no record message of the hub`);
      const b = message.body ?? {};
      if (!Number.isInteger(b.from_tree_size) || b.from_tree_size < 0) throw new VerifyError('malformed', 'body.from_tree_size is not a size');
      if (!Array.isArray(b.consistency_proof) || !b.consistency_proof.every((h) => HEX64.test(h))) throw new VerifyError('malformed', 'body.consistency_proof is not a list of hex hashes');
      const checkpoint = jsonObject((await verifyCompact(b.checkpoint, directory, { signer: HUB })).payload, 'the checkpoint');
      if (checkpoint.log !== LOG || !Number.isInteger(checkpoint.tree_size) || !HEX64.test(checkpoint.root_hash)) throw new VerifyError('malformed', 'not a checkpoint of the record');
      offered = { jws: b.checkpoint, checkpoint };
    } catch (err) {
      return { outcome: 'rejected', reason: `${err.problem ?? 'malformed'}: ${err.message}` };
    }
    const b = message.body;
    const held = this.held;
    const now = offered.checkpoint;
    if (held === null) return this._hold(offered);
    const old = held.checkpoint;
    if (now.tree_size < old.tree_size) {
      if (now.time <= old.time) return { outcome: 'stale' }; // the times sort as text
      return this._fork(`the log shrank from ${old.tree_size} to ${now.tree_size} entries`, offered, b);
    }
    if (now.tree_size === old.tree_size) {
      if (now.root_hash !== old.root_hash) return this._fork(`two roots for the same tree size ${old.tree_size}: the log was rewritten`, offered, b);
      return { outcome: 'same' };
    }
    if (b.from_tree_size !== old.tree_size) {
      this.wanted = { from_tree_size: old.tree_size, to_tree_size: now.tree_size };
      return { outcome: 'ask' };
    }
    try {
      verifyConsistency(old.tree_size, now.tree_size, b.consistency_proof.map((h) => Buffer.from(h, 'hex')),
        Buffer.from(old.root_hash, 'hex'), Buffer.from(now.root_hash, 'hex'));
    } catch (err) {
      return this._fork(`no consistency from ${old.tree_size} to ${now.tree_size}: ${err.message}`, offered, b);
    }
    return this._hold(offered);
  }

  _hold(offered) {
    this.held = offered;
    this.wanted = null;
    return { outcome: 'accepted', tree_size: offered.checkpoint.tree_size };
  }

  _fork(reason, offered, body) {
    const evidence = { reason, held: this.held.jws, offered: offered.jws, from_tree_size: body.from_tree_size, consistency_proof: body.consistency_proof };
    if (this.fork === null) this.fork = evidence;
    return { outcome: 'fork', reason };
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [deliveriesFile, directoryFile] = process.argv.slice(2);
  const directory = await Directory.fromFile(directoryFile);
  const witness = new Witness();
  for (const { type, body } of JSON.parse(readFileSync(deliveriesFile, 'utf8'))) {
    const got = await witness.take(Buffer.from(body, 'utf8'), directory);
    process.stdout.write(`${JSON.stringify({ type, ...got, held: witness.held?.checkpoint.tree_size ?? null })}\n`);
  }
}
