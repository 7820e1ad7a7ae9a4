// Watches one authority's inbox until its witness of the hub's record reports a fork:
// JSON lines on stdout (`record_checkpoint` as each is held, `record_fork` with the
// evidence), exit 0 once a fork is reported, 1 if none within TF_TIMEOUT_S.

import { Agency, configFromEnv } from './agency.mjs';
import { exitWith } from './side.mjs';

exitWith(async () => {
  const config = configFromEnv();
  const agency = await Agency.open(config);
  await agency.startInbox();
  agency.say('watching', {});
  const deadline = Date.now() + config.timeoutMs;
  while (Date.now() < deadline && agency.witness.fork === null) {
    await new Promise((resolve) => { setTimeout(resolve, 100); });
  }
  const { fork } = agency.witness;
  agency.say('done', { fork: fork !== null, held: agency.witness.held?.checkpoint.tree_size ?? null });
  await agency.close();
  return fork === null ? 1 : 0;
});
