// Reads deliveries from a JSON file the way the agency reads its inbox, without a broker:
//   {"directory": "<path of the trusted directory>",
//    "deliveries": [{"name": "...", "type": "key_directory"|"...", "body": "<text>"}, ...]}
// one after another against the directory held (a key_directory delivery is taken only
// if it verifies and is newer). One JSON line per delivery: what was taken, or the
// problem that stopped it. Exit 0 once every delivery is read (the caller judges).

import { readFileSync } from 'node:fs';

import { Directory, TYPE_DIRECTORY, readDelivery } from './agency.mjs';
import { exitWith } from './side.mjs';

async function main() {
  const cases = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  const directory = await Directory.fromFile(cases.directory);
  for (const { name, type, body } of cases.deliveries) {
    const bytes = Buffer.from(body, 'utf8');
    let line;
    if (type === TYPE_DIRECTORY) {
      try {
        line = { ok: true, ...(await directory.update(bytes)) };
      } catch (err) {
        line = { ok: false, problem: err.problem ?? 'malformed', reason: err.message };
      }
    } else {
      const read = await readDelivery(bytes, directory);
      line = read.ok
        ? { ok: true, kind: read.message.kind, hub_kid: read.verified.key.kid, originals: read.originals.map((o) => ({ sender: o.envelope.sender, kid: o.key.kid })) }
        : { ok: false, problem: read.problem, reason: read.reason };
    }
    process.stdout.write(`${JSON.stringify({ event: 'delivery', name, ...line })}\n`);
  }
  return 0;
}

exitWith(main);
