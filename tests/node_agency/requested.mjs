// The requested authority (RU-MIA in the test): waits for the `request_delivered` notice,
// verifies the requester's original signature in it, reads the request from that signed
// original, and answers with a receipt and an execution report (each in reply to it).
// Prints one JSON line per thing seen or checked; exits 0 only if everything verified.

import { envelope, errorAbout, noticeOf, payloadDigest } from './agency.mjs';
import { runSide } from './side.mjs';

const LINGER_MS = 2000; // time for a refusal of our answers to come back

runSide(async ({ agency, config, fail }) => {
  const { authority: me, peer, requestId } = config;
  let delivered;
  try {
    delivered = await agency.expect(noticeOf(requestId, 'request_delivered'), config.timeoutMs, 'request_delivered notice');
  } catch (err) {
    fail('request_delivered', { reason: err.message });
    return;
  }
  const notice = delivered.message;
  agency.say('notice', { notice_event: notice.body.event, status: notice.body.status, request_id: notice.request_id, hub_kid: delivered.verified.key.kid, originals: delivered.originals.length });

  // The request as the requester signed it, not as the hub retold it.
  const original = delivered.originals.find((o) => o.envelope.kind === 'request');
  if (!original) {
    fail('request_original', { reason: 'the request_delivered notice carries no request original' });
    return;
  }
  const request = original.envelope;
  const fields = { notice_event: 'request_delivered', kind: request.kind, sender: request.sender, kid: original.key.kid, key_owner: original.key.owner, message_id: request.message_id, request_id: request.request_id, digest: original.digest };
  if (request.sender !== peer || request.recipient !== me) {
    fail('request_original_parties', fields);
    return;
  }
  if (notice.body.about_message_id !== request.message_id) {
    fail('request_original_about', { ...fields, about_message_id: notice.body.about_message_id });
    return;
  }
  agency.say('verified_original', { ...fields, assistance_requested: request.body.assistance_requested, confidentiality: request.body.confidentiality });

  const receipt = envelope('receipt', { sender: me, recipient: peer, requestId, treatyId: request.treaty_id, inReplyTo: request.message_id, body: {} });
  await agency.send(receipt);
  agency.say('sent', { kind: 'receipt', message_id: receipt.message_id, in_reply_to: request.message_id });
  const report = envelope('execution_report', {
    sender: me, recipient: peer, requestId, treatyId: request.treaty_id, inReplyTo: request.message_id,
    body: {
      extent: 'full',
      summary: `Executed in full: ${request.body.assistance_requested} Statements attached.`,
      confidentiality: request.body.confidentiality,
    },
  });
  const reportToken = await agency.send(report);
  agency.say('sent', { kind: 'execution_report', message_id: report.message_id, in_reply_to: request.message_id, digest: payloadDigest(reportToken) });
  agency.expectedReceipts = [['acceptance', receipt.message_id], ['acceptance', report.message_id], ['delivery', report.message_id]];

  await new Promise((resolve) => setTimeout(resolve, LINGER_MS));
  for (const sent of [receipt, report]) {
    const error = agency.received.find(errorAbout(sent.message_id));
    if (error) fail(`${sent.kind}_refused`, { hub_error: error.message.body });
  }
});
