// Verifies receipts of the hub's record (docs/reference/evidence.md, "Receipts") as the
// node agency does when they reach its inbox:
//   node receipt.mjs DIRECTORY_FILE RECIPIENT RECEIPTS_FILE [SENT_FILE]
// RECEIPTS_FILE: one record_receipt JWS a line; SENT_FILE: {"message id": "sha-256 hex", ...}.
// Prints one JSON line per receipt checked ({"event": "receipt_checked"}), or per message
// refused ({"event": "receipt_refused"}).

import { readFileSync } from 'node:fs';

import { Directory, say, verifyReceipts } from './agency.mjs';

const [directoryFile, recipient, receiptsFile, sentFile] = process.argv.slice(2);
const directory = await Directory.fromFile(directoryFile);
const sent = new Map(Object.entries(sentFile ? JSON.parse(readFileSync(sentFile, 'utf8')) : {}));
for (const line of readFileSync(receiptsFile, 'utf8').split('\n').filter((l) => l.trim())) {
  try {
    for (const { receipt, entry, checkpoint } of await verifyReceipts(line, directory, recipient, sent)) {
      say(recipient, 'receipt_checked', { receipt: receipt.receipt, entry_kind: entry.kind, index: entry.index, tree_size: checkpoint.tree_size });
    }
  } catch (err) {
    say(recipient, 'receipt_refused', { problem: err.problem ?? 'malformed', reason: err.message });
  }
}
