// The requesting authority (KZ-GPO in the test): sends a request, then a tampered message
// and a message with a wrong JSON type, and waits for the `executed` notice carrying the
// requested authority's signed execution report and for the hub's two errors.
// Prints one JSON line per thing seen or checked; exits 0 only if everything verified.

import { existsSync, readFileSync } from 'node:fs';

import { base64url, envelope, errorAbout, newMessageId, noticeOf, payloadDigest, sha256hex, signEnvelope, signingInput } from './agency.mjs';
import { runSide } from './side.mjs';

export function requestBody(overrides = {}) {
  return {
    purpose: "Investigation of a fraud scheme; the suspect's accounts are abroad.",
    assistance_requested: 'Bank statements of account 123 for 2025.',
    facts: 'Between March and June 2025 funds were moved through account 123.',
    confidentiality: 'confidential',
    form_of_cooperation: 'information_exchange',
    crime_category: 'economic_money_laundering_terrorist_financing',
    language: 'ru',
    urgent: false,
    oral: false,
    signed_by: { name: 'A. Head', position: 'head' },
    domestic_case: 'KZ-2025-000123',
    ...overrides,
  };
}

const SHA256 = /\b[0-9a-f]{64}\b/;

runSide(async ({ agency, config, fail }) => {
  const { authority: me, peer, requestId } = config;
  const schema = new URL('../../docs/contract/schemas/request.json', import.meta.url);
  if (existsSync(schema)) checkAgainstSchema(agency, JSON.parse(readFileSync(schema, 'utf8')), requestBody(), fail);

  // 1. The request.
  const request = envelope('request', { sender: me, recipient: peer, requestId, body: requestBody() });
  const requestToken = await agency.send(request);
  // The hub's receipts: our request accepted, and delivered to the requested authority;
  // the malformed one refused (checked once the rest is done, in side.mjs).
  agency.say('sent', { kind: 'request', message_id: request.message_id, request_id: requestId, kid: config.kid, digest: payloadDigest(requestToken) });

  // 2. A valid JWS whose payload segment was replaced after signing.
  const tamperedId = newMessageId();
  const honest = envelope('request', { sender: me, recipient: peer, requestId: `${requestId}-T`, body: requestBody(), messageId: tamperedId });
  const [head, , signature] = (await signEnvelope(honest, agency.signingKey)).split('.');
  const altered = { ...honest, body: { ...honest.body, facts: 'Altered after signing.' } };
  const tampered = `${head}.${base64url.encode(JSON.stringify(altered))}.${signature}`;
  await agency.publishToken(tampered, { messageId: tamperedId, correlationId: honest.request_id, type: 'request', sentAt: honest.sent_at });
  const tamperedSha = sha256hex(signingInput(tampered));
  agency.say('sent', { kind: 'request', tampered: true, message_id: tamperedId, signing_input_sha256: tamperedSha });

  // 3. A correctly signed request whose body.urgent is a string, not a boolean.
  const wrongType = envelope('request', { sender: me, recipient: peer, requestId: `${requestId}-W`, body: requestBody({ urgent: 'no' }) });
  await agency.send(wrongType);
  agency.say('sent', { kind: 'request', wrong_type: 'body.urgent', message_id: wrongType.message_id });
  agency.expectedReceipts = [['acceptance', request.message_id], ['delivery', request.message_id], ['rejection', wrongType.message_id]];

  const wait = config.timeoutMs;
  const [executed, badSignature, malformed] = await Promise.allSettled([
    agency.expect(noticeOf(requestId, 'executed'), wait, 'executed notice'),
    agency.expect(errorAbout(tamperedId), wait, 'error about the tampered message'),
    agency.expect(errorAbout(wrongType.message_id), wait, 'error about the wrong-type message'),
  ]);

  // The executed notice, and the requested authority's own signature inside it.
  if (executed.status === 'rejected') {
    const error = agency.received.find(errorAbout(request.message_id));
    fail('executed', { reason: executed.reason.message, hub_error: error?.message.body ?? null });
  } else {
    const notice = executed.value.message;
    agency.say('notice', { notice_event: notice.body.event, status: notice.body.status, request_id: notice.request_id, hub_kid: executed.value.verified.key.kid, originals: executed.value.originals.length });
    const report = executed.value.originals.find((o) => o.envelope.kind === 'execution_report');
    if (!report) {
      fail('executed_original', { reason: 'the executed notice carries no execution_report original' });
    } else {
      const o = report.envelope;
      const fields = { notice_event: 'executed', kind: o.kind, sender: o.sender, kid: report.key.kid, key_owner: report.key.owner, message_id: o.message_id, in_reply_to: o.in_reply_to ?? null, request_id: o.request_id, digest: report.digest, extent: o.body.extent };
      if (o.sender !== peer) fail('executed_original_sender', fields);
      else if (o.in_reply_to !== request.message_id) fail('executed_original_in_reply_to', fields);
      else if (o.body.extent !== 'full' || notice.body.detail?.summary !== o.body.summary) fail('executed_original_body', { ...fields, detail: notice.body.detail });
      else agency.say('verified_original', fields);
    }
  }

  // The tampered message: bad_signature naming our kid and the SHA-256 of what we sent.
  if (badSignature.status === 'rejected') {
    fail('bad_signature', { reason: badSignature.reason.message });
  } else {
    const body = badSignature.value.message.body;
    const reasons = body.reasons.join(' ');
    const fields = { problem: body.problem, refused_message_id: body.refused_message_id, reasons: body.reasons, hub_kid: badSignature.value.verified.key.kid };
    if (body.problem !== 'bad_signature') fail('bad_signature_problem', fields);
    else if (!reasons.includes(config.kid) || !SHA256.test(reasons)) fail('bad_signature_reason', fields);
    else agency.say('error_checked', { expected: 'bad_signature', kid_named: true, sha256_named: reasons.match(SHA256)[0], sha256_is_signing_input: reasons.includes(tamperedSha), ...fields });
  }

  // The wrong JSON type: malformed, naming body.urgent.
  if (malformed.status === 'rejected') {
    fail('malformed', { reason: malformed.reason.message });
  } else {
    const body = malformed.value.message.body;
    const fields = { problem: body.problem, refused_message_id: body.refused_message_id, reasons: body.reasons, hub_kid: malformed.value.verified.key.kid };
    if (body.problem !== 'malformed') fail('malformed_problem', fields);
    else if (!body.reasons.some((r) => r.includes('body.urgent'))) fail('malformed_reason', fields);
    else agency.say('error_checked', { expected: 'malformed', field_named: 'body.urgent', ...fields });
  }

  const requestError = agency.received.find(errorAbout(request.message_id));
  if (requestError) fail('request_refused', { hub_error: requestError.message.body });
});

/** The body against the published schema's list of required members and property names. */
function checkAgainstSchema(agency, schema, body, fail) {
  const defs = schema.$defs ?? schema.definitions ?? {};
  const resolve = (node) => (node && node.$ref ? defs[node.$ref.split('/').pop()] : node);
  const bodySchema = resolve(schema.properties?.body) ?? (schema.title?.toLowerCase().includes('body') ? schema : null);
  if (!bodySchema || !bodySchema.properties) {
    agency.say('schema', { checked: false, reason: 'no body schema found in docs/contract/schemas/request.json' });
    return;
  }
  const missing = (bodySchema.required ?? []).filter((name) => !(name in body));
  const unknown = Object.keys(body).filter((name) => !(name in bodySchema.properties));
  if (missing.length || unknown.length) fail('schema', { missing, unknown });
  else agency.say('schema', { checked: true, required: bodySchema.required ?? [] });
}
