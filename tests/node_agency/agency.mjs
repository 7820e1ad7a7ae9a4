// A treatyflow agency in Node.js, written from the published wire contract alone
// (docs/contract/): every message is a JWS compact serialization (RFC 7515 §7.1) signed
// with the sender's Ed25519 key (alg EdDSA, RFC 8037) and naming it in `kid`; the key
// directory is a JWKS (RFC 7517) in a JWS general JSON serialization signed by the hub.
//
// Only npm `amqplib` and `jose` and Node's built-ins: nothing of the treatyflow package.

import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

import amqp from 'amqplib';
// The receipts' proofs: the bundle verifier's code (written from docs/reference/evidence.md).
import { Problem, encodeLeaf, leafHash, proofHashes, readCheckpoint, rootFromInclusion } from './verify-evidence.mjs';
import {
  CompactSign,
  base64url,
  compactVerify,
  decodeProtectedHeader,
  generalVerify,
  importJWK,
  importPKCS8,
} from 'jose';

import { RECORD_TYPES, Witness } from './witness.mjs';

// --- names of the contract -------------------------------------------------------------

export { base64url };

// A topic exchange: publish with routing key = your own authority id (your lane to the hub).
export const EXCHANGE_HUB = 'treatyflow.inbound';
export const CONTENT_TYPE_JWS = 'application/jose';
export const CONTENT_TYPE_JWS_JSON = 'application/jose+json';
export const TYPE_DIRECTORY = 'key_directory';
export const TYPE_RECEIPT = 'record_receipt';
export const HUB = 'HUB';
export const SCHEMA_VERSION = '2';
export const JWS_ALG = 'EdDSA';
// RFC 8037's name and RFC 9864's name for the same algorithm; nothing else is accepted.
export const ACCEPTED_ALGS = ['EdDSA', 'Ed25519'];
// Header members that would name a key other than by kid, or change what is signed.
export const REFUSED_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit', 'b64'];
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export const inboxQueue = (authority) => `authority.${authority}.inbox`;

/** A message that cannot be accepted; `problem` is the contract's code for why. */
export class VerifyError extends Error {
  constructor(problem, reason) {
    super(reason);
    this.problem = problem;
  }
}

export const sha256hex = (data) => createHash('sha256').update(data).digest('hex');
const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

function asText(data) {
  if (typeof data === 'string') return data;
  return utf8.decode(data);
}

/** `bytes` as a JSON object, or a VerifyError('malformed'). */
export function jsonObject(bytes, what) {
  let value;
  try {
    value = JSON.parse(asText(bytes));
  } catch (err) {
    throw new VerifyError('malformed', `${what} is not UTF-8 JSON: ${err.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new VerifyError('malformed', `${what} is not a JSON object`);
  }
  return value;
}

/** One line of JSON on stdout: what this process saw and verified. */
export function say(who, event, fields = {}) {
  process.stdout.write(`${JSON.stringify({ who, event, ...fields })}\n`);
}

// --- the key directory -----------------------------------------------------------------

/** The public key of a directory entry, for verifying under `alg`. */
async function publicKey(jwk, alg) {
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new VerifyError('unknown_key', `key ${JSON.stringify(jwk.kid)} is not an Ed25519 (OKP) key`);
  }
  // Only the members that make the key: the directory's own (owner, validity) stay out.
  return importJWK({ kty: 'OKP', crv: 'Ed25519', x: jwk.x }, alg);
}

/** The key `kid` names, checked for use: registered, of `signer` if given, not revoked. */
function usableKey(directory, header, signer) {
  if (!ACCEPTED_ALGS.includes(header.alg)) {
    throw new VerifyError('bad_signature', `alg ${JSON.stringify(header.alg)} is not accepted: EdDSA (Ed25519) only`);
  }
  const refused = REFUSED_HEADERS.filter((name) => name in header);
  if (refused.length) {
    throw new VerifyError('bad_signature', `header parameter(s) ${refused.join(', ')} are not accepted`);
  }
  const kid = header.kid;
  if (typeof kid !== 'string' || !kid) {
    throw new VerifyError('unknown_key', 'the JWS header names no kid');
  }
  const key = directory.lookup(kid);
  if (!key) throw new VerifyError('unknown_key', `key ${JSON.stringify(kid)} is not in the directory`);
  if (signer !== undefined && key.owner !== signer) {
    throw new VerifyError('unknown_key', `key ${JSON.stringify(kid)} is a key of ${key.owner}, not of ${signer}`);
  }
  if (key.revoked_at) {
    throw new VerifyError('unknown_key', `key ${JSON.stringify(kid)} of ${key.owner} was revoked at ${key.revoked_at}`);
  }
  return key;
}

/** The keys an agency holds: every key of the hub and of the authorities. */
export class Directory {
  constructor(keys, issuedAt = null) {
    this.keys = keys; // JWKs with owner, valid_from, retired_at?, revoked_at?
    this.issuedAt = issuedAt; // the directory's issued_at (text), or null
  }

  lookup(kid) {
    return this.keys.find((k) => k.kid === kid) ?? null;
  }

  get issuedAtMs() {
    return this.issuedAt === null ? null : Date.parse(this.issuedAt);
  }

  /**
   * The directory an operator handed over (`treatyflow keys export --jwks`): trusted as
   * given, out of band. A signed one must still verify under the hub keys it lists; a
   * bare JWKS (`--unsigned`) is taken as it is.
   */
  static async fromFile(path) {
    const text = readFileSync(path);
    const value = jsonObject(text, 'the directory file');
    if (Array.isArray(value.keys) && !('signatures' in value)) return new Directory(value.keys);
    const payload = jsonObject(base64url.decode(String(value.payload ?? '')), 'the directory payload');
    const self = new Directory(Array.isArray(payload.keys) ? payload.keys : []);
    return (await verifyDirectory(text, self)).directory;
  }

  /**
   * A directory the hub sent: verified against the hub keys held now, and taken only if
   * it is newer. Throws VerifyError if no signature is by a hub key held.
   */
  async update(text) {
    const { directory, kid } = await verifyDirectory(text, this);
    const newer = this.issuedAtMs === null || directory.issuedAtMs > this.issuedAtMs;
    if (newer) {
      this.keys = directory.keys;
      this.issuedAt = directory.issuedAt;
    }
    return { taken: newer, issued_at: directory.issuedAt, keys: directory.keys.length, kid };
  }
}

/**
 * A key directory (JWS general JSON serialization) checked against `trusted`: at least
 * one signature by a hub key held there and not revoked. Returns the directory inside and
 * the kid whose signature held.
 */
export async function verifyDirectory(text, trusted) {
  const value = jsonObject(text, 'the directory');
  if (!Array.isArray(value.signatures) || value.signatures.length === 0) {
    throw new VerifyError('malformed', 'the directory is not a JWS in general JSON serialization (no signatures)');
  }
  const problems = [];
  // The key is named by the protected kid alone: an unprotected header could rename it.
  const signatures = value.signatures.filter((member) => {
    if (member && typeof member === 'object' && !('header' in member)) return true;
    problems.push('a signature with an unprotected header was ignored');
    return false;
  });
  let result;
  try {
    result = await generalVerify(
      { payload: value.payload, signatures },
      async (header) => {
        try {
          return await publicKey(usableKey(trusted, header, HUB), header.alg);
        } catch (err) {
          problems.push(`${header.kid}: ${err.message}`);
          throw err;
        }
      },
      { algorithms: ACCEPTED_ALGS },
    );
  } catch (err) {
    throw new VerifyError('bad_signature', `no signature of the directory is by a hub key held (${problems.join('; ') || err.message})`);
  }
  const payload = jsonObject(result.payload, 'the directory payload');
  if (typeof payload.issued_at !== 'string' || Number.isNaN(Date.parse(payload.issued_at))) {
    throw new VerifyError('malformed', 'the directory has no issued_at time');
  }
  if (!Array.isArray(payload.keys)) throw new VerifyError('malformed', 'the directory has no keys');
  return { directory: new Directory(payload.keys, payload.issued_at), kid: result.protectedHeader.kid };
}

// --- signing and verifying messages ----------------------------------------------------

/** The authority's private key (PKCS#8 PEM) and the kid it is registered under. */
export async function loadSigningKey(pemFile, kid) {
  return { kid, key: await importPKCS8(readFileSync(pemFile, 'utf8'), JWS_ALG) };
}

/** An envelope as a JWS compact serialization: its JSON, exactly these bytes, signed. */
export async function signEnvelope(envelope, signingKey) {
  const payload = encoder.encode(JSON.stringify(envelope));
  return new CompactSign(payload)
    .setProtectedHeader({ alg: JWS_ALG, kid: signingKey.kid })
    .sign(signingKey.key);
}

/** SHA-256 of a compact JWS's payload as signed: the message's identity in the hub's record. */
export const payloadDigest = (token) => sha256hex(Buffer.from(token.split('.')[1], 'base64url'));

/** The signing input of a compact JWS (what the signature covers): header.payload. */
export const signingInput = (token) => token.slice(0, token.lastIndexOf('.'));

/**
 * A compact JWS checked against the directory: the key its kid names (of `signer` if
 * given, not revoked) verifies the bytes as they are; only then is the payload parsed.
 */
export async function verifyCompact(token, directory, { signer } = {}) {
  let text;
  try {
    text = asText(token).trim();
  } catch {
    throw new VerifyError('malformed', 'the body is not UTF-8');
  }
  if (!COMPACT.test(text)) {
    if (text.startsWith('{')) throw new VerifyError('unsigned', 'plain JSON, not a JWS');
    throw new VerifyError('malformed', 'not a JWS compact serialization');
  }
  let header;
  try {
    header = decodeProtectedHeader(text);
  } catch (err) {
    throw new VerifyError('malformed', `the JWS header is not base64url JSON: ${err.message}`);
  }
  const key = usableKey(directory, header, signer);
  let checked;
  try {
    checked = await compactVerify(text, await publicKey(key, header.alg), { algorithms: ACCEPTED_ALGS });
  } catch (err) {
    throw new VerifyError('bad_signature', `the signature under key ${JSON.stringify(key.kid)} does not match the signed bytes (SHA-256 of the signing input ${sha256hex(signingInput(text))}): ${err.message}`);
  }
  const envelope = jsonObject(checked.payload, 'the JWS payload');
  return { token: text, header: checked.protectedHeader, key, payload: checked.payload, envelope, digest: sha256hex(checked.payload) };
}

/**
 * A message one party sent through the hub, checked against its sender's own key: the
 * key its kid names verifies it, and that key's owner is the envelope's sender.
 */
export async function readOriginal(token, directory) {
  const checked = await verifyCompact(token, directory);
  if (checked.envelope.sender !== checked.key.owner) {
    throw new VerifyError('bad_original', `signed with key ${checked.key.kid} of ${checked.key.owner}, but the envelope names ${checked.envelope.sender} as its sender`);
  }
  return checked;
}

/**
 * One delivery from the inbox: `{ok: true, message, verified, originals}` if it is a JWS
 * by a hub key whose envelope names the hub as sender, and every original a notice passes
 * on verifies against its sender's key and is about the notice's request; else
 * `{ok: false, problem, reason}`: reported, never acted on.
 */
export async function readDelivery(body, directory) {
  try {
    const verified = await verifyCompact(body, directory, { signer: HUB });
    const message = verified.envelope;
    if (message.schema_version !== SCHEMA_VERSION) {
      throw new VerifyError('malformed', `schema_version ${JSON.stringify(message.schema_version)}, not "2"`);
    }
    if (message.sender !== HUB) throw new VerifyError('unknown_key', `sender ${message.sender} is not the hub`);
    const originals = [];
    if (message.kind === 'notice') {
      const tokens = message.body?.originals ?? [];
      if (!Array.isArray(tokens)) throw new VerifyError('malformed', 'body.originals is not a list');
      for (const token of tokens) {
        let original;
        try {
          original = await readOriginal(token, directory);
        } catch (err) {
          throw new VerifyError('bad_original', `an original this notice passes on does not verify: ${err.problem}: ${err.message}`);
        }
        const o = original.envelope;
        if (o.request_id !== message.request_id || o.treaty_id !== message.treaty_id) {
          throw new VerifyError('bad_original', `original ${o.message_id} is about request ${o.request_id}, not ${message.request_id}`);
        }
        originals.push(original);
      }
    }
    return { ok: true, message, verified, originals };
  } catch (err) {
    if (err instanceof VerifyError) return { ok: false, problem: err.problem, reason: err.message };
    return { ok: false, problem: 'malformed', reason: String(err) };
  }
}

// --- receipts from the hub's record (docs/reference/evidence.md, "Receipts") ---------

const RECEIPT_ENTRY_KINDS = { rejection: ['refused'], delivery: ['delivered', 'deadline'], retrieval: ['retrieved'] };
const HUB_ENTRY_KINDS = ['refused', 'delivered', 'retrieved', 'deadline', 'operator'];

/** The message id of `recipient`'s receipts of these entries (ids, in order). */
export const receiptId = (recipient, entryIds) => `receipt-${sha256hex([recipient, ...entryIds].join('\x1f')).slice(0, 40)}`;

/**
 * A message of receipts (a JWS by a hub key) for `recipient`: its checkpoint signed by a
 * hub key, its message id the one its recipient and entries give, and each receipt's
 * entry's leaf (recomputed from the fields) included in the checkpoint's tree, of the kind
 * the receipt says, each message it names of the digest we sent under that id (`sent`:
 * message id -> SHA-256 of the payload). Returns one { receipt, entry, checkpoint, token }
 * per receipt; throws VerifyError naming the check (and the receipt) that failed.
 */
export async function verifyReceipts(body, directory, recipient, sent = new Map()) {
  const checked = await verifyCompact(body, directory, { signer: HUB });
  const m = checked.envelope;
  if (m.kind !== TYPE_RECEIPT || !Array.isArray(m.receipts) || !m.receipts.length
      || m.receipts.some((r) => !r || typeof r.entry !== 'object' || !r.entry || !Array.isArray(r.about) || !r.about.length)) {
    throw new VerifyError('malformed', 'not a message of receipts of the record');
  }
  if (m.recipient !== recipient) throw new VerifyError('not_ours', `the receipt is for ${m.recipient}, not ${recipient}`);
  const ids = m.receipts.map((r) => r.entry.entry_id);
  if (new Set(ids).size !== ids.length || m.message_id !== receiptId(m.recipient, ids)) {
    throw new VerifyError('malformed', 'the message id is not the one its recipient and entries give');
  }
  let checkpoint;
  try {
    checkpoint = await readCheckpoint(m.checkpoint, directory.keys);
  } catch (err) {
    throw new VerifyError('bad_checkpoint', `its checkpoint does not verify: ${err.message}`);
  }
  return m.receipts.map((r, at) => {
    try {
      checkReceipt(r, recipient, checkpoint, sent);
    } catch (err) {
      if (err instanceof VerifyError) throw new VerifyError(err.problem, `receipts[${at}] (entry ${r.entry.entry_id}): ${err.message}`);
      throw err;
    }
    return { receipt: r, entry: r.entry, checkpoint, token: checked.token };
  });
}

function checkReceipt(r, recipient, checkpoint, sent) {
  const entry = r.entry;
  try {
    const root = rootFromInclusion(entry.index, checkpoint.tree_size, leafHash(encodeLeaf(entry)), proofHashes(r.inclusion, 'the inclusion proof'));
    if (!root.equals(checkpoint.root)) throw new Problem(`the inclusion proof of leaf ${entry.index} leads to another root`);
  } catch (err) {
    if (!(err instanceof Problem) && !(err instanceof TypeError) && !(err instanceof RangeError)) throw err;
    throw new VerifyError('not_included', `entry ${entry.entry_id} is not in the checkpoint of size ${checkpoint.tree_size}: ${err.message}`);
  }
  const allowed = RECEIPT_ENTRY_KINDS[r.receipt];
  if (r.receipt === 'acceptance' ? HUB_ENTRY_KINDS.includes(entry.kind) : !allowed?.includes(entry.kind)) {
    throw new VerifyError('wrong_kind', `an entry of kind ${entry.kind} is not what a ${r.receipt} receipt is about`);
  }
  if (r.receipt === 'acceptance' && (r.about.length !== 1 || r.about[0].digest !== entry.digest || entry.actor !== recipient)) {
    throw new VerifyError('wrong_entry', 'the entry is not the acceptance of the named message');
  }
  for (const about of r.about) {
    if (about.digest && sent.has(about.message_id) && sent.get(about.message_id) !== about.digest) {
      throw new VerifyError('wrong_digest', `message ${about.message_id}: the receipt's digest is not the SHA-256 of what was sent`);
    }
  }
}

// --- envelopes -------------------------------------------------------------------------

export const newMessageId = () => randomUUID();

/** An envelope of schema_version 2; `in_reply_to` is left out when there is none. */
export function envelope(kind, { sender, recipient, requestId, body, inReplyTo, messageId, treatyId = 'sco-2010', sentAt }) {
  const out = {
    schema_version: SCHEMA_VERSION,
    message_id: messageId ?? newMessageId(),
    kind,
    request_id: requestId,
    treaty_id: treatyId,
    sender,
    recipient,
    sent_at: sentAt ?? new Date().toISOString(),
  };
  if (inReplyTo) out.in_reply_to = inReplyTo;
  out.body = body;
  return out;
}

// --- the connection --------------------------------------------------------------------

/** Settings from the environment, as the test (or an operator) passes them. */
export function configFromEnv(env = process.env) {
  const need = (name) => {
    const value = env[name];
    if (!value) throw new Error(`${name} is not set`);
    return value;
  };
  return {
    url: need('TF_AMQP_URL'),
    authority: need('TF_AUTHORITY'),
    keyFile: need('TF_KEY_FILE'),
    kid: need('TF_KID'),
    directoryFile: need('TF_DIRECTORY'),
    peer: env.TF_PEER,
    requestId: env.TF_REQUEST_ID,
    timeoutMs: Number(env.TF_TIMEOUT_S ?? 60) * 1000,
  };
}

/**
 * One authority's connection to the hub: publishes signed envelopes on a confirm channel
 * and consumes its inbox with manual acks, verifying every delivery.
 */
export class Agency {
  constructor({ authority, connection, publisher, consumer, signingKey, directory }) {
    this.authority = authority;
    this.connection = connection;
    this.publisher = publisher;
    this.consumer = consumer;
    this.signingKey = signingKey;
    this.directory = directory;
    this.received = []; // verified messages, in arrival order
    this.receipts = []; // verified receipts from the hub's record, kept for a dispute
    this.badReceipts = []; // receipts that failed verification
    this.sentDigests = new Map(); // message id -> SHA-256 of the payload we signed
    this.unverified = []; // deliveries that failed verification
    this.seen = new Set();
    this.retrieved = []; // notices acknowledged to the hub: message and request ids
    this.witness = new Witness(); // the hub's record, checkpoint after checkpoint
    this._waiters = [];
    this._chain = Promise.resolve();
  }

  static async open(config) {
    const signingKey = await loadSigningKey(config.keyFile, config.kid);
    const directory = await Directory.fromFile(config.directoryFile);
    const connection = await amqp.connect(config.url, {
      clientProperties: { connection_name: `node-agency:${config.authority}` },
    });
    const publisher = await connection.createConfirmChannel();
    const consumer = await connection.createChannel();
    await consumer.prefetch(50);
    return new Agency({ authority: config.authority, connection, publisher, consumer, signingKey, directory });
  }

  say(event, fields) {
    say(this.authority, event, fields);
  }

  /** Publish a JWS as it is, with the contract's AMQP properties; resolves on the broker's confirm. */
  publishToken(token, { messageId, correlationId, type, sentAt }) {
    const properties = {
      contentType: CONTENT_TYPE_JWS,
      persistent: true,
      messageId,
      correlationId,
      type,
      userId: this.authority,
      timestamp: Math.floor((sentAt ? Date.parse(sentAt) : Date.now()) / 1000),
    };
    return new Promise((resolve, reject) => {
      this.publisher.publish(EXCHANGE_HUB, this.authority, Buffer.from(token, 'ascii'), properties, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Sign `envelope` with this authority's key and publish it; returns the JWS sent. */
  async send(message) {
    const token = await signEnvelope(message, this.signingKey);
    this.sentDigests.set(message.message_id, payloadDigest(token));
    await this.publishToken(token, { messageId: message.message_id, correlationId: message.request_id, type: message.kind, sentAt: message.sent_at });
    return token;
  }

  /** Consume the inbox: each delivery is verified, handled, and only then acked. */
  async startInbox() {
    await this.consumer.consume(inboxQueue(this.authority), (delivery) => {
      if (delivery === null) return; // consumer cancelled by the broker
      // One at a time, in the broker's order: a directory is taken before what follows it.
      this._chain = this._chain.then(() => this._handle(delivery));
    }, { noAck: false });
  }

  async _handle(delivery) {
    try {
      if (delivery.properties.type === TYPE_DIRECTORY) {
        try {
          this.say('directory', { verified: true, ...(await this.directory.update(delivery.content)) });
        } catch (err) {
          this.say('directory_refused', { problem: err.problem ?? 'malformed', reason: err.message });
        }
      } else if (delivery.properties.type === TYPE_RECEIPT) {
        try {
          const read = await verifyReceipts(delivery.content, this.directory, this.authority, this.sentDigests);
          const fresh = read.filter((one) => !this.receipts.some((r) => r.entry.entry_id === one.entry.entry_id));
          if (fresh.length) {
            this.receipts.push(...fresh);
            this._wake();
          }
        } catch (err) {
          this.badReceipts.push(err);
          this.say('receipt_refused', { problem: err.problem ?? 'malformed', reason: err.message });
        }
      } else if (RECORD_TYPES.includes(delivery.properties.type)) {
        await this._witness(delivery.content);
      } else {
        const read = await readDelivery(delivery.content, this.directory);
        if (!read.ok) {
          this.unverified.push(read);
          this.say('unverified', { problem: read.problem, reason: read.reason, amqp_message_id: delivery.properties.messageId ?? null });
        } else if (this.seen.has(read.message.message_id)) {
          this.say('duplicate', { message_id: read.message.message_id });
        } else {
          this.seen.add(read.message.message_id);
          if (read.message.kind === 'notice') await this._acknowledge(read.message, delivery.content);
          this.received.push(read);
          this._wake();
        }
      }
      this.consumer.ack(delivery);
    } catch (err) {
      this.say('handler_failed', { reason: String(err) });
      this.consumer.nack(delivery, false, true);
    }
  }

  /**
   * A notice verified: acknowledged to the hub in a `retrieval` (docs/reference/evidence.md),
   * which records it as retrieved, before the scripts see it and its delivery is acked. A
   * retrieval not confirmed is said, and the notice acked all the same.
   */
  async _acknowledge(notice, token) {
    const retrieval = {
      schema_version: SCHEMA_VERSION, message_id: `rt-${newMessageId()}`, kind: 'retrieval',
      sender: this.authority, recipient: HUB, sent_at: new Date().toISOString(),
      body: { notices: [{ notice_message_id: notice.message_id, request_id: notice.request_id, treaty_id: notice.treaty_id, digest: payloadDigest(asText(token)) }] },
    };
    try {
      await this.send(retrieval);
      this.retrieved.push({ message_id: notice.message_id, request_id: notice.request_id });
    } catch (err) {
      this.say('retrieval_not_sent', { notice_message_id: notice.message_id, reason: String(err) });
    }
  }

  /** A checkpoint of the hub's record, checked by the witness; a fork is said loudly. */
  async _witness(body) {
    const got = await this.witness.take(body, this.directory);
    if (got.outcome === 'fork') {
      this.say('record_fork', { reason: got.reason, evidence: this.witness.fork });
    } else if (got.outcome === 'rejected') {
      this.say('record_message_refused', { reason: got.reason });
    } else if (got.outcome === 'ask') {
      const ask = { schema_version: SCHEMA_VERSION, message_id: `cr-${newMessageId()}`, kind: 'consistency_request', sender: this.authority, recipient: HUB, sent_at: new Date().toISOString(), body: this.witness.wanted };
      await this.send(ask);
    } else {
      this.say('record_checkpoint', { outcome: got.outcome, tree_size: this.witness.held?.checkpoint.tree_size });
    }
    this._wake();
  }

  _wake() {
    for (const waiter of [...this._waiters]) waiter();
  }

  /** The verified receipt of `kind` about our message `messageId`, held or within `timeoutMs`. */
  expectReceipt(messageId, kind, timeoutMs) {
    const match = (r) => r.receipt.receipt === kind && r.receipt.about.some((a) => a.message_id === messageId);
    return this.expect(match, timeoutMs, `a ${kind} receipt of ${messageId}`, this.receipts);
  }

  /** The first verified message matching `match`, received already or within `timeoutMs`. */
  expect(match, timeoutMs, what = 'a message', list = this.received) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = list.find((r) => match(r));
        if (!found) return false;
        cleanup();
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no ${what} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this._waiters = this._waiters.filter((w) => w !== check);
      };
      this._waiters.push(check);
      check();
    });
  }

  async close() {
    try {
      await this._chain;
      await this.connection.close();
    } catch {
      // already gone
    }
  }
}

/** A notice of `event` about request `requestId`. */
export const noticeOf = (requestId, event) => (r) => r.message.kind === 'notice' && r.message.request_id === requestId && r.message.body?.event === event;

/** The hub's error about the message with id `messageId`. */
export const errorAbout = (messageId) => (r) => r.message.kind === 'error' && r.message.body?.refused_message_id === messageId;
