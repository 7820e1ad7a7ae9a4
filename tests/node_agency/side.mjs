// What the two sides of one request share as processes: the agency opened from the
// environment with its peer and request id, the checks that failed (each one JSON line),
// the closing `done` line, and the exit code (0 only if nothing failed; 2 if it crashed).

import { Agency, configFromEnv } from './agency.mjs';

/** Runs `main` as the process and exits with the code it returns (2 and a `crashed` line if it throws). */
export function exitWith(main) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stdout.write(`${JSON.stringify({ event: 'crashed', reason: String(err?.stack ?? err) })}\n`);
      process.exit(2);
    },
  );
}

/**
 * The hub's receipts of what this side sent (the `receipts` list of what to expect, set
 * by the side as `agency.expectedReceipts`), each verified by the agency as it arrived:
 * one `receipt_checked` line each, with its entry and checkpoint.
 */
async function checkReceipts(agency, config, fail) {
  for (const [kind, messageId] of agency.expectedReceipts ?? []) {
    try {
      const { receipt, entry, checkpoint } = await agency.expectReceipt(messageId, kind, config.timeoutMs);
      agency.say('receipt_checked', { receipt: kind, message_id: messageId, entry_kind: entry.kind, actor: entry.actor, index: entry.index, digest: entry.digest, tree_size: checkpoint.tree_size, about: receipt.about });
    } catch (err) {
      fail(`receipt_${kind}`, { message_id: messageId, reason: err.message });
    }
  }
}

/**
 * Runs one side of a request: `check({ agency, config, fail })` with the inbox started,
 * where `fail(what, detail)` records a failed check; then the `done` line and the exit code.
 */
export function runSide(check) {
  exitWith(async () => {
    const config = configFromEnv();
    if (!config.peer || !config.requestId) throw new Error('TF_PEER and TF_REQUEST_ID are needed');
    const agency = await Agency.open(config);
    const failures = [];
    const fail = (what, detail) => {
      failures.push(what);
      agency.say('failed', { check: what, ...detail });
    };
    try {
      await agency.startInbox();
      await check({ agency, config, fail });
      await checkReceipts(agency, config, fail);
    } finally {
      agency.say('done', { ok: failures.length === 0, failures, unverified: agency.unverified.length, receipts: agency.receipts.length, bad_receipts: agency.badReceipts.length, retrieved: agency.retrieved, directory_issued_at: agency.directory.issuedAt });
      await agency.close();
    }
    return failures.length === 0 ? 0 : 1;
  });
}
