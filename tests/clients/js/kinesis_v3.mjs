// The AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis) against Spate, with the client's
// DEFAULT request handler: for Kinesis that is NodeHttp2Handler, i.e. HTTP/2 — over
// http:// that means h2c with prior knowledge. Covers create, describe, put, put-batch,
// iterators, get, tags and one error; exits non-zero on the first failure.
//
//   node kinesis_v3.mjs http://127.0.0.1:PORT
// NODE_PATH must hold @aws-sdk/client-kinesis (tests/clients/run.sh installs it).

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.SPATE_NPM_DIR || process.cwd(), "noop.js"));
const k = require("@aws-sdk/client-kinesis");

const endpoint = process.argv[2];
const host = new URL(endpoint).hostname;
if (!["127.0.0.1", "localhost", "::1", "[::1]"].includes(host)) {
  console.error(`refusing non-loopback endpoint ${endpoint}`);
  process.exit(2);
}

const client = new k.KinesisClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "secret" },
  maxAttempts: 2,
});

let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`PASS ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const name = `js-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
const deadline = Date.now() + 60_000;

await check("handler-is-http2", async () => {
  const h = client.config.requestHandler;
  const ctor = h && h.constructor && h.constructor.name;
  assert(/Http2/i.test(String(ctor)), `default handler is ${ctor}`);
});

await check("create-and-wait", async () => {
  await client.send(new k.CreateStreamCommand({ StreamName: name, ShardCount: 2 }));
  await k.waitUntilStreamExists({ client, maxWaitTime: 60, minDelay: 1, maxDelay: 2 }, { StreamName: name });
  const d = await client.send(new k.DescribeStreamSummaryCommand({ StreamName: name }));
  assert(d.StreamDescriptionSummary.StreamStatus === "ACTIVE", "not ACTIVE");
  assert(d.StreamDescriptionSummary.OpenShardCount === 2, "shard count");
  assert(d.StreamDescriptionSummary.StreamCreationTimestamp instanceof Date, "timestamp type");
});

let firstSeq;
await check("put-and-put-batch", async () => {
  const r = await client.send(
    new k.PutRecordCommand({ StreamName: name, PartitionKey: "a", Data: new TextEncoder().encode("hello") }),
  );
  assert(/^\d+$/.test(r.SequenceNumber), "sequence number");
  firstSeq = r;
  const b = await client.send(
    new k.PutRecordsCommand({
      StreamName: name,
      Records: [1, 2, 3].map((i) => ({ PartitionKey: "a", Data: new Uint8Array([i]) })),
    }),
  );
  assert(b.FailedRecordCount === 0 && b.Records.length === 3, "batch");
});

await check("iterators-and-get", async () => {
  const it = await client.send(
    new k.GetShardIteratorCommand({ StreamName: name, ShardId: firstSeq.ShardId, ShardIteratorType: "TRIM_HORIZON" }),
  );
  let iter = it.ShardIterator;
  let records = [];
  while (records.length < 4 && Date.now() < deadline) {
    const g = await client.send(new k.GetRecordsCommand({ ShardIterator: iter }));
    records = records.concat(g.Records);
    iter = g.NextShardIterator;
  }
  assert(new TextDecoder().decode(records[0].Data) === "hello", "data round trip");
  assert(records[0].ApproximateArrivalTimestamp instanceof Date, "arrival timestamp");
  const at = await client.send(
    new k.GetShardIteratorCommand({
      StreamName: name,
      ShardId: firstSeq.ShardId,
      ShardIteratorType: "AT_SEQUENCE_NUMBER",
      StartingSequenceNumber: firstSeq.SequenceNumber,
    }),
  );
  const g = await client.send(new k.GetRecordsCommand({ ShardIterator: at.ShardIterator }));
  assert(g.Records[0].SequenceNumber === firstSeq.SequenceNumber, "AT_SEQUENCE_NUMBER");
});

await check("tags", async () => {
  await client.send(new k.AddTagsToStreamCommand({ StreamName: name, Tags: { team: "js" } }));
  const t = await client.send(new k.ListTagsForStreamCommand({ StreamName: name }));
  assert(t.Tags.length === 1 && t.Tags[0].Value === "js", "tags");
});

await check("error-resource-not-found", async () => {
  try {
    await client.send(new k.DescribeStreamCommand({ StreamName: `${name}-missing` }));
    throw new Error("no error");
  } catch (e) {
    assert(e.name === "ResourceNotFoundException", `got ${e.name}`);
    assert(e.$metadata.httpStatusCode === 400, "status");
  }
});

await check("delete", async () => {
  await client.send(new k.DeleteStreamCommand({ StreamName: name }));
});

client.destroy();
console.log(failed === 0 ? "js: all passed" : `js: ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
