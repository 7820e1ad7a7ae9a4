// Verifies an evidence bundle of the hub's record (docs/reference/evidence.md) with node's
// crypto and npm `jose` alone, as a party without treatyflow would:
//   node verify-evidence.mjs BUNDLE_FILE [HELD_CHECKPOINT_FILE]
// Prints "verified: ..." (with how many entries were withheld from the party the bundle was
// exported for) and exits 0, or prints one problem a line and exits 1; 2 if a file cannot
// be read.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { compactVerify, decodeProtectedHeader, generalVerify, importJWK } from 'jose';

const FORMAT = 'treatyflow-evidence/1';
const LOG = 'treatyflow-record';
const ALGS = ['EdDSA', 'Ed25519'];
const REFUSED_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64'];
const HEX64 = /^[0-9a-f]{64}$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const TEXT_FIELDS = ['entry_id', 'request_id', 'procedure', 'treaty', 'actor', 'kind', 'time'];
const WITHHELD = ['not_addressed', 'operator_action']; // why a party's export omits a JWS
// The members a bundle and an entry may have: any other is refused (every byte counts).
const BUNDLE_MEMBERS = ['format', 'request_id', 'party', 'checkpoint', 'directory', 'entries', 'consistency'];
const ENTRY_MEMBERS = [...TEXT_FIELDS, 'index', 'digest', 'jws', 'withheld', 'inclusion'];
const unknown = (object, members) => Object.keys(object).filter((name) => !members.includes(name));

const sha256 = (...parts) => createHash('sha256').update(Buffer.concat(parts)).digest();
export const leafHash = (leaf) => sha256(Buffer.from([0]), leaf);
const nodeHash = (left, right) => sha256(Buffer.from([1]), left, right);
const hex = (value) => Buffer.from(value, 'hex');
const utf8 = new TextDecoder('utf-8', { fatal: true });

export class Problem extends Error {}

/** Each segment base64url without padding, re-encoding to itself (no altered spare bits). */
function canonical(jws) {
  const parts = String(jws).split('.');
  return parts.length === 3 && parts.every(
    (p) => /^[A-Za-z0-9_-]+$/.test(p) && Buffer.from(p, 'base64url').toString('base64url') === p);
}

/** The walk both RFC 9162 verifications share (§2.1.3.2 step 4, §2.1.4.2 step 6): for each
 *  of `count` proof hashes, whether it is the left sibling; `sn` must reach 0 at the end. */
function sides(fnStart, snStart, count, what) {
  let fn = BigInt(fnStart);
  let sn = BigInt(snStart);
  const out = [];
  for (let i = 0; i < count; i += 1) {
    if (sn === 0n) throw new Problem(`the ${what} proof is longer than the tree is high`);
    const left = (fn & 1n) === 1n || fn === sn;
    out.push(left);
    while (left && fn !== 0n && (fn & 1n) === 0n) { fn >>= 1n; sn >>= 1n; }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Problem(`the ${what} proof is shorter than the tree is high`);
  return out;
}

/** RFC 9162 §2.1.3.2: the root an inclusion proof leads to. */
export function rootFromInclusion(index, size, leaf, proof) {
  if (!(index >= 0 && index < size)) throw new Problem(`leaf index ${index} is not below the tree size ${size}`);
  let r = leaf;
  sides(index, size - 1, proof.length, 'inclusion').forEach((left, i) => {
    r = left ? nodeHash(proof[i], r) : nodeHash(r, proof[i]);
  });
  return r;
}

/** RFC 9162 §2.1.4.2: the tree of `first` leaves is a prefix of the tree of `second`. */
export function verifyConsistency(first, second, proof, firstRoot, secondRoot) {
  if (first > second) throw new Problem(`size ${first} is later than size ${second}`);
  if (first === second || first === 0) {
    if (proof.length) throw new Problem(`a proof from ${first} to ${second} must be empty`);
    if (first === second && !firstRoot.equals(secondRoot)) throw new Problem(`two different roots for the same size ${first}`);
    return;
  }
  if (!proof.length) throw new Problem(`the consistency proof from ${first} to ${second} is empty`);
  const path = (BigInt(first) & BigInt(first - 1)) === 0n ? [firstRoot, ...proof] : [...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
  let fr = path[0];
  let sr = path[0];
  sides(fn, sn, path.length - 1, 'consistency').forEach((left, i) => {
    const c = path[i + 1];
    if (left) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
    } else {
      sr = nodeHash(sr, c);
    }
  });
  if (!fr.equals(firstRoot)) throw new Problem(`the consistency proof does not lead to the root of size ${first}: the log was rewritten before that size`);
  if (!sr.equals(secondRoot)) throw new Problem(`the consistency proof does not lead to the root of size ${second}`);
}

/** The entry's canonical leaf: 0x01, index (u64 BE), seven (u16 BE length, UTF-8) texts, digest. */
export function encodeLeaf(entry) {
  const head = Buffer.alloc(9);
  head.writeUInt8(1, 0);
  head.writeBigUInt64BE(BigInt(entry.index), 1);
  const parts = [head];
  for (const name of TEXT_FIELDS) {
    const raw = Buffer.from(entry[name], 'utf8');
    const length = Buffer.alloc(2);
    length.writeUInt16BE(raw.length, 0);
    parts.push(length, raw);
  }
  parts.push(hex(entry.digest));
  return Buffer.concat(parts);
}

export function proofHashes(list, what) {
  if (!Array.isArray(list) || !list.every((h) => HEX64.test(h))) throw new Problem(`${what} is not a list of lowercase hex SHA-256 hashes`);
  return list.map(hex);
}

/** The hub's key directory, checked against the hub keys it lists itself. */
async function directoryKeys(text) {
  let directory;
  let listed;
  try {
    directory = JSON.parse(text);
    listed = JSON.parse(utf8.decode(Buffer.from(directory.payload, 'base64url'))).keys;
    if (!Array.isArray(listed)) throw new Error('no keys');
  } catch (err) {
    throw new Problem(`the key directory is not a JWS in JSON serialization: ${err.message}`);
  }
  const hubKey = (header) => {
    const jwk = listed.find((k) => k.kid === header.kid && k.owner === 'HUB' && !k.revoked_at);
    if (!jwk) throw new Problem(`the directory is signed by ${header.kid}, not a hub key it lists`);
    return importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, 'EdDSA');
  };
  try {
    await generalVerify(directory, hubKey, { algorithms: ALGS });
  } catch (err) {
    throw new Problem(`the key directory does not verify: ${err.message}`);
  }
  return listed;
}

/** A compact JWS verified with the key its kid names; returns the key and the payload bytes. */
async function verifyJws(jws, keys, { owner = null, revoked = false } = {}) {
  if (!canonical(jws)) throw new Problem('its JWS is not canonical base64url');
  let header;
  try {
    header = decodeProtectedHeader(jws);
  } catch (err) {
    throw new Problem(`its JWS header is not JSON: ${err.message}`);
  }
  if (!ALGS.includes(header.alg)) throw new Problem(`alg ${header.alg} is not accepted`);
  const refused = REFUSED_HEADERS.filter((name) => name in header);
  if (refused.length) throw new Problem(`header parameter(s) ${refused.join(', ')} are not accepted`);
  const jwk = keys.find((k) => k.kid === header.kid);
  if (!jwk) throw new Problem(`key ${header.kid} is not in the directory`);
  if (owner && jwk.owner !== owner) throw new Problem(`key ${header.kid} is not a key of ${owner}`);
  if (jwk.revoked_at && !revoked) throw new Problem(`key ${header.kid} was revoked`);
  try {
    const { payload } = await compactVerify(jws, await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, 'EdDSA'), { algorithms: ALGS });
    return { jwk, payload: Buffer.from(payload) };
  } catch (err) {
    throw new Problem(`the signature under key ${header.kid} does not match: ${err.message}`);
  }
}

export async function readCheckpoint(jws, keys) {
  const { payload } = await verifyJws(String(jws).trim(), keys, { owner: 'HUB' });
  let checkpoint;
  try {
    checkpoint = JSON.parse(utf8.decode(payload));
  } catch (err) {
    throw new Problem(`its payload is not JSON: ${err.message}`);
  }
  const names = Object.keys(checkpoint).sort().join(',');
  if (names !== 'log,root_hash,time,tree_size' || checkpoint.log !== LOG || !Number.isSafeInteger(checkpoint.tree_size)
      || checkpoint.tree_size < 0 || !HEX64.test(checkpoint.root_hash) || !TIME.test(checkpoint.time)) {
    throw new Problem('its payload is not a checkpoint of the record');
  }
  return { ...checkpoint, root: hex(checkpoint.root_hash) };
}

/** A withheld entry (a party's export): no JWS, a known reason; its leaf, built from the
 *  fields and digest it keeps, is checked by its inclusion proof alone. */
function withheldProblem(entry, bundle) {
  if (entry.jws === undefined) return 'it has no jws member (a withheld entry has "jws": null)';
  if (entry.jws !== null) return 'it is marked withheld, yet carries its JWS';
  if (entry.withheld === undefined || entry.withheld === null) return 'it carries no JWS and is not marked withheld';
  if (!WITHHELD.includes(entry.withheld)) return `it is withheld for an unknown reason ${JSON.stringify(entry.withheld)}`;
  if (typeof bundle.party !== 'string') return 'it is withheld, in a bundle exported for no party';
  return null;
}

/** Whether a verified payload names `party` as its sender or recipient. */
function names(payload, party) {
  try {
    const found = JSON.parse(utf8.decode(payload));
    return found !== null && typeof found === 'object' && (found.sender === party || found.recipient === party);
  } catch {
    return false;
  }
}

/** Checks one entry; returns whether its verified payload names the bundle's party. */
async function checkEntry(entry, n, bundle, keys, checkpoint, problems) {
  const where = `entry ${n} (index ${entry.index}, ${entry.kind})`;
  const withheld = (entry.withheld !== undefined && entry.withheld !== null) || entry.jws === null;
  const malformed = [...TEXT_FIELDS.filter((name) => typeof entry[name] !== 'string' || !entry[name]),
    ...unknown(entry, ENTRY_MEMBERS).map((name) => `unknown member ${JSON.stringify(name)}`)];
  if (malformed.length || !Number.isSafeInteger(entry.index) || entry.index < 0 || !HEX64.test(entry.digest)
      || !TIME.test(entry.time) || (!withheld && typeof entry.jws !== 'string')) {
    problems.push(`${where}: its fields are malformed (${malformed.join(', ') || 'index, digest, time or jws'})`);
    return false;
  }
  if (entry.request_id !== bundle.request_id) problems.push(`${where}: it is of request ${entry.request_id}, not ${bundle.request_id}`);
  let named = false;
  if (withheld) {
    const problem = withheldProblem(entry, bundle);
    if (problem) problems.push(`${where}: ${problem}`);
  } else {
    try {
      const { jwk, payload } = await verifyJws(entry.jws, keys, { revoked: true });
      if (sha256(payload).toString('hex') !== entry.digest) problems.push(`${where}: the digest is not the SHA-256 of the JWS's payload`);
      if (jwk.revoked_at && Date.parse(jwk.revoked_at) <= Date.parse(entry.time)) problems.push(`${where}: signed with key ${jwk.kid}, revoked before the entry's time`);
      named = typeof bundle.party === 'string' && names(payload, bundle.party);
    } catch (err) {
      if (!(err instanceof Problem)) throw err;
      problems.push(`${where}: the signature does not verify: ${err.message}`);
    }
  }
  try {
    const root = rootFromInclusion(entry.index, checkpoint.tree_size, leafHash(encodeLeaf(entry)), proofHashes(entry.inclusion, 'the inclusion proof'));
    if (!root.equals(checkpoint.root)) throw new Problem(`the inclusion proof of leaf ${entry.index} leads to another root`);
  } catch (err) {
    if (!(err instanceof Problem)) throw err;
    problems.push(`${where}: not included in the checkpoint of size ${checkpoint.tree_size}: ${err.message}`);
  }
  return named;
}

async function checkHeld(heldJws, bundle, keys, checkpoint) {
  let held;
  try {
    held = await readCheckpoint(heldJws, keys);
  } catch (err) {
    return [`the checkpoint you held does not verify with the bundle's keys: ${err.message}`];
  }
  if (held.tree_size > checkpoint.tree_size) return [`the checkpoint you held (size ${held.tree_size}) is later than the bundle's (size ${checkpoint.tree_size}): export the bundle again`];
  const proof = (bundle.consistency || []).find((p) => p.from_size === held.tree_size);
  if (!proof && held.tree_size !== 0 && held.tree_size !== checkpoint.tree_size) return [`the bundle carries no consistency proof from size ${held.tree_size}`];
  try {
    verifyConsistency(held.tree_size, checkpoint.tree_size, proof ? proofHashes(proof.proof, 'the consistency proof') : [], held.root, checkpoint.root);
  } catch (err) {
    if (!(err instanceof Problem)) throw err;
    return [`the log is not consistent with the checkpoint you held (size ${held.tree_size}, ${held.time}): ${err.message}`];
  }
  return [];
}

/** Every problem of the bundle (empty: it verifies), and what it proves. */
export async function verifyBundle(text, heldJws = null) {
  let bundle;
  try {
    bundle = JSON.parse(text);
    if (bundle.format !== FORMAT || typeof bundle.request_id !== 'string' || !Array.isArray(bundle.entries)
        || !(bundle.party === undefined || bundle.party === null || (typeof bundle.party === 'string' && bundle.party))) throw new Error(`not ${FORMAT}`);
    const extra = unknown(bundle, BUNDLE_MEMBERS);
    if (extra.length) throw new Error(`unknown member(s) ${extra.join(', ')}`);
    if (bundle.consistency !== undefined && !Array.isArray(bundle.consistency)) throw new Error('consistency is not a list');
  } catch (err) {
    return { problems: [`not an evidence bundle: ${err.message}`] };
  }
  let keys;
  let checkpoint;
  try {
    keys = await directoryKeys(bundle.directory);
  } catch (err) {
    if (!(err instanceof Problem)) throw err;
    return { problems: [err.message] };
  }
  try {
    checkpoint = await readCheckpoint(bundle.checkpoint, keys);
  } catch (err) {
    if (!(err instanceof Problem)) throw err;
    return { problems: [`the checkpoint does not verify: ${err.message}`] };
  }
  const problems = [];
  if (!bundle.entries.length) problems.push('the bundle holds no entry');
  let last = -1;
  let named = false;
  for (const [n, entry] of bundle.entries.entries()) {
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      problems.push(`entry ${n}: not an object`);
      continue;
    }
    if (!(entry.index > last)) problems.push(`entry ${n} (index ${entry.index}, ${entry.kind}): the entries are not in log order`);
    last = entry.index;
    named = (await checkEntry(entry, n, bundle, keys, checkpoint, problems)) || named;
  }
  if (typeof bundle.party === 'string' && !named) problems.push(`the bundle is exported for ${bundle.party}, whom none of the messages it carries names as sender or recipient`);
  if (heldJws !== null) problems.push(...await checkHeld(heldJws, bundle, keys, checkpoint));
  const withheld = bundle.entries.filter((e) => e.jws === null || (e.withheld !== undefined && e.withheld !== null)).length;
  return { problems, bundle, checkpoint, withheld };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [bundleFile, heldFile] = process.argv.slice(2);
  let text;
  let held = null;
  try {
    text = readFileSync(bundleFile, 'utf8');
    if (heldFile) held = readFileSync(heldFile, 'utf8');
  } catch (err) {
    console.error(`verify-evidence: ${err.message}`);
    process.exit(2);
  }
  const { problems, bundle, checkpoint, withheld } = await verifyBundle(text, held);
  if (problems.length) {
    for (const problem of problems) console.log(problem);
    process.exit(1);
  }
  const party = typeof bundle.party === 'string' ? ` (exported for ${bundle.party}: each withheld entry checked by its inclusion proof alone)` : '';
  console.log(`verified: ${bundle.entries.length} entries of request ${bundle.request_id}, in the checkpoint of size ${checkpoint.tree_size} signed at ${checkpoint.time}; ${withheld} withheld${party}`);
}
