// Checks the published test vectors (docs/contract/vectors/*.json, or the folder given as
// the first argument) with npm `jose` and nothing else:
//   a valid vector verifies: importJWK, compactVerify allowing only EdDSA/Ed25519,
//     header kid == jwk.kid, jwk.owner == vector.signer == payload.sender;
//   an invalid vector fails at some step (which one is printed).
// One JSON line per vector, then a summary line; exit 1 listing mismatches (or if no
// vector was found), 2 if the folder does not exist.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { compactVerify, decodeProtectedHeader, generalVerify, importJWK } from 'jose';

const ACCEPTED_ALGS = ['EdDSA', 'Ed25519'];
const REFUSED_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64'];
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

const first = (object, ...names) => {
  for (const name of names) if (object && object[name] !== undefined) return object[name];
  return undefined;
};

/** Whether a vector is meant to verify: `valid: true|false`, or `expect`/`expected`/`result` "valid"/"invalid"… */
function expectedValid(vector) {
  const flag = first(vector, 'valid', 'verifies', 'should_verify');
  if (typeof flag === 'boolean') return flag;
  const word = first(vector, 'expect', 'expected', 'result', 'outcome', 'expected_result');
  if (typeof word === 'string') {
    if (/^(valid|ok|pass|accept(ed)?|verif(y|ies|ied))$/i.test(word)) return true;
    if (/^(invalid|fail(s|ed)?|reject(ed)?|refused?|error)$/i.test(word)) return false;
  }
  if (word && typeof word === 'object' && typeof word.valid === 'boolean') return word.valid;
  return undefined;
}

/** The vectors a file holds: one object, a list, or `{vectors: [...]}`; and any key set it carries. */
function vectorsOf(value) {
  if (Array.isArray(value)) return { vectors: value, keys: null };
  if (Array.isArray(value.vectors)) return { vectors: value.vectors, keys: value.keys ?? value.jwks?.keys ?? null };
  if (Array.isArray(value.keys) && first(value, 'jws', 'token', 'compact', 'jws_compact') === undefined) {
    return { vectors: [], keys: value.keys };
  }
  return { vectors: [value], keys: null };
}

/** Every step a valid vector passes; the first that throws is where an invalid one fails. */
// The key directory: a JWS in general JSON serialization, one signature per hub key; it
// verifies if a signature by the vector's hub key does (jose's generalVerify).
async function checkDirectory(vector, text, at) {
  at('directory');
  const jwk = first(vector, 'jwk', 'public_jwk', 'key', 'public_key');
  if (!jwk || jwk.owner !== 'HUB' || first(vector, 'signer') !== 'HUB') throw new Error('a directory is signed by the hub');
  const key = await importJWK({ kty: 'OKP', crv: 'Ed25519', x: jwk.x }, 'EdDSA');
  const { payload, protectedHeader } = await generalVerify(JSON.parse(text), key, { algorithms: ACCEPTED_ALGS });
  if (protectedHeader.kid !== jwk.kid) throw new Error(`the verifying signature names ${protectedHeader.kid}, not ${jwk.kid}`);
  const expected = first(vector, 'payload');
  if (typeof expected === 'string' && expected !== utf8.decode(payload)) throw new Error('the payload is not the bytes the vector states');
  const directory = JSON.parse(utf8.decode(payload));
  if (!Array.isArray(directory.keys)) throw new Error('the directory holds no keys');
  return { verified: true, kid: protectedHeader.kid, alg: protectedHeader.alg, signer: 'HUB' };
}

async function check(vector, sharedKeys) {
  const token = first(vector, 'jws', 'token', 'compact', 'jws_compact', 'message');
  const step = { name: 'format' };
  const at = (name) => {
    step.name = name;
  };
  try {
    if (typeof token === 'string' && token.startsWith('{')) return await checkDirectory(vector, token, at);
    if (typeof token !== 'string' || !COMPACT.test(token)) throw new Error('not a JWS compact serialization');
    at('header');
    const header = decodeProtectedHeader(token);
    if (!ACCEPTED_ALGS.includes(header.alg)) throw new Error(`alg ${JSON.stringify(header.alg)} is not EdDSA/Ed25519`);
    const refused = REFUSED_HEADERS.filter((name) => name in header);
    if (refused.length) throw new Error(`refused header parameter(s) ${refused.join(', ')}`);
    if (typeof header.kid !== 'string' || !header.kid) throw new Error('no kid');
    at('key');
    let jwk = first(vector, 'jwk', 'public_jwk', 'key', 'public_key');
    const keySet = first(vector, 'jwks', 'directory', 'keys') ?? (sharedKeys ? { keys: sharedKeys } : undefined);
    if ((jwk === undefined || typeof jwk !== 'object') && keySet) {
      const list = Array.isArray(keySet) ? keySet : keySet.keys;
      jwk = (list ?? []).find((k) => k.kid === header.kid);
    }
    if (!jwk || typeof jwk !== 'object') throw new Error(`no key for kid ${header.kid}`);
    if (jwk.kid !== header.kid) throw new Error(`header kid ${header.kid} is not the key's kid ${jwk.kid}`);
    if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') throw new Error('the key is not an Ed25519 (OKP) key');
    if ('d' in jwk) throw new Error('the verification key carries a private member d');
    if (jwk.revoked_at) throw new Error(`key ${jwk.kid} was revoked at ${jwk.revoked_at}`);
    const key = await importJWK({ kty: 'OKP', crv: 'Ed25519', x: jwk.x }, header.alg);
    at('signature');
    const { payload } = await compactVerify(token, key, { algorithms: ACCEPTED_ALGS });
    at('payload');
    const envelope = JSON.parse(utf8.decode(payload));
    if (envelope === null || typeof envelope !== 'object' || Array.isArray(envelope)) throw new Error('the payload is not a JSON object');
    at('signer');
    const signer = first(vector, 'signer', 'owner', 'sender');
    if (typeof signer !== 'string') throw new Error('the vector names no signer');
    if (jwk.owner !== signer) throw new Error(`key owner ${jwk.owner} is not the signer ${signer}`);
    if (envelope.sender !== signer) throw new Error(`payload sender ${envelope.sender} is not the signer ${signer}`);
    at('payload_bytes');
    const expected = first(vector, 'payload', 'payload_text', 'payload_json');
    if (typeof expected === 'string' && expected !== utf8.decode(payload)) throw new Error('the payload is not the bytes the vector states');
    return { verified: true, kid: header.kid, alg: header.alg, signer };
  } catch (err) {
    return { verified: false, step: step.name, reason: err.message };
  }
}

async function main() {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const folder = process.argv[2] ?? join(here, '..', '..', 'docs', 'contract', 'vectors');
  if (!existsSync(folder)) {
    process.stdout.write(`${JSON.stringify({ event: 'no_vectors', folder })}\n`);
    return 2;
  }
  const files = readdirSync(folder).filter((name) => name.endsWith('.json')).sort();
  const mismatches = [];
  let valid = 0;
  let invalid = 0;
  // Key sets published beside the vectors (a file that is only a JWKS) serve every file.
  const parsed = [];
  let shared = null;
  for (const file of files) {
    try {
      const value = JSON.parse(readFileSync(join(folder, file), 'utf8'));
      const { vectors, keys } = vectorsOf(value);
      if (keys && !vectors.length) shared = [...(shared ?? []), ...keys];
      parsed.push({ file, vectors, keys });
    } catch (err) {
      mismatches.push({ file, reason: `not JSON: ${err.message}` });
    }
  }
  for (const { file, vectors, keys } of parsed) {
    if (!vectors.length) {
      process.stdout.write(`${JSON.stringify({ event: 'keys', file, keys: keys?.length ?? 0 })}\n`);
      continue;
    }
    for (const [index, vector] of vectors.entries()) {
      const name = first(vector, 'name', 'id', 'title', 'description') ?? `${basename(file)}#${index}`;
      const expect = expectedValid(vector);
      const got = await check(vector, keys ?? shared);
      const line = { event: 'vector', file, name, expected: expect === undefined ? 'unstated' : expect ? 'valid' : 'invalid', ...got };
      const problem = first(vector, 'problem', 'expected_problem', 'error');
      if (problem !== undefined) line.expected_problem = problem;
      if (expect === undefined) {
        mismatches.push({ file, name, reason: 'the vector does not say whether it is valid' });
      } else if (expect !== got.verified) {
        mismatches.push({ file, name, reason: expect ? `should verify, failed at ${got.step}: ${got.reason}` : 'should fail, verified' });
      }
      if (expect) valid += 1;
      else invalid += 1;
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
  }
  const checked = valid + invalid;
  if (checked === 0) mismatches.push({ folder, reason: 'no vector found' });
  process.stdout.write(`${JSON.stringify({ event: 'summary', folder, files: files.length, checked, valid, invalid, mismatches })}\n`);
  return mismatches.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stdout.write(`${JSON.stringify({ event: 'crashed', reason: String(err?.stack ?? err) })}\n`);
    process.exit(2);
  },
);
