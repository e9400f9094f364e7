// Enhanced fan-out with the AWS SDK for JavaScript v3 (@aws-sdk/client-kinesis) and its
// default HTTP/2 handler over http:// (h2c): register a consumer, subscribe, receive every
// record put during the subscription, in order; then split the subscribed shard and see
// `ChildShards` in the parent's last event. Run by tests/clients/run_efo_js.sh.
"use strict";
const assert = require("node:assert/strict");
const {
  KinesisClient,
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  DeleteStreamCommand,
  RegisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  ListStreamConsumersCommand,
  SubscribeToShardCommand,
  PutRecordCommand,
  SplitShardCommand,
} = require("@aws-sdk/client-kinesis");
const { NodeHttp2Handler } = require("@smithy/node-http-handler");

const endpoint = process.env.SPATE_ENDPOINT;
const host = endpoint && new URL(endpoint).hostname;
if (!["127.0.0.1", "localhost", "::1"].includes(host)) {
  console.error("SPATE_ENDPOINT must be a loopback http:// endpoint, got", endpoint);
  process.exit(2);
}
const client = new KinesisClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "secret" },
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  // The default handler must be the HTTP/2 one (what we want to exercise).
  const handler = client.config.requestHandler;
  assert.ok(handler instanceof NodeHttp2Handler, "default request handler is NodeHttp2Handler");

  const name = `efo-js-${Date.now()}`;
  await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: 1 }));
  let arn;
  for (let i = 0; i < 120; i++) {
    const s = (await client.send(new DescribeStreamSummaryCommand({ StreamName: name })))
      .StreamDescriptionSummary;
    arn = s.StreamARN;
    if (s.StreamStatus === "ACTIVE") break;
    await sleep(250);
  }
  const reg = await client.send(new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: "js" }));
  const consumerARN = reg.Consumer.ConsumerARN;
  assert.match(consumerARN, new RegExp(`^${arn}/consumer/js:\\d+$`));
  for (let i = 0; i < 120; i++) {
    const d = await client.send(new DescribeStreamConsumerCommand({ ConsumerARN: consumerARN }));
    if (d.ConsumerDescription.ConsumerStatus === "ACTIVE") break;
    await sleep(250);
  }
  const list = await client.send(new ListStreamConsumersCommand({ StreamARN: arn }));
  assert.deepEqual(list.Consumers.map((c) => c.ConsumerName), ["js"]);

  const sub = await client.send(
    new SubscribeToShardCommand({
      ConsumerARN: consumerARN,
      ShardId: "shardId-000000000000",
      StartingPosition: { Type: "LATEST" },
    })
  );
  const n = 50;
  const sent = [];
  const got = [];
  let events = 0;
  let producer;
  const deadline = Date.now() + 30000;
  // One iterator for the whole subscription (a `break` out of `for await` would close it).
  const events_it = sub.EventStream[Symbol.asyncIterator]();
  const nextEvent = async () => {
    const { value, done } = await events_it.next();
    if (done) return null;
    assert.ok(value.SubscribeToShardEvent, `unexpected event ${JSON.stringify(value)}`);
    return value.SubscribeToShardEvent;
  };
  for (;;) {
    const e = await nextEvent();
    assert.ok(e, "the subscription ended before every record arrived");
    events++;
    assert.ok(typeof e.ContinuationSequenceNumber === "string");
    assert.ok(typeof e.MillisBehindLatest === "number");
    if (!producer) {
      producer = (async () => {
        for (let i = 0; i < n; i++) {
          const r = await client.send(
            new PutRecordCommand({ StreamName: name, PartitionKey: `k${i}`, Data: Buffer.from(`js${i}`) })
          );
          sent.push(r.SequenceNumber);
        }
      })();
    }
    for (const r of e.Records) got.push(r);
    if (got.length >= n || Date.now() > deadline) break;
  }
  await producer;
  assert.equal(got.length, n, `received ${got.length} of ${n} records in ${events} events`);
  assert.deepEqual(got.map((r) => Buffer.from(r.Data).toString()), [...Array(n).keys()].map((i) => `js${i}`));
  assert.deepEqual(got.map((r) => r.SequenceNumber), sent);
  assert.ok(got[0].ApproximateArrivalTimestamp instanceof Date);

  // Split the subscribed shard: the parent's last event carries ChildShards, then it ends.
  const mid = 1n << 127n;
  await client.send(
    new SplitShardCommand({
      StreamName: name,
      ShardToSplit: "shardId-000000000000",
      NewStartingHashKey: mid.toString(),
    })
  );
  const splitDeadline = Date.now() + 60000;
  let last;
  for (;;) {
    const e = await nextEvent();
    assert.ok(e, "the subscription ended without ChildShards");
    assert.deepEqual(e.Records, [], "records after the split");
    if (e.ChildShards && e.ChildShards.length) {
      last = e;
      break;
    }
    assert.ok(Date.now() < splitDeadline, "no ChildShards within 60 s of the split");
  }
  const kids = [...last.ChildShards].sort((a, b) => a.ShardId.localeCompare(b.ShardId));
  assert.deepEqual(kids, [
    {
      ShardId: "shardId-000000000001",
      ParentShards: ["shardId-000000000000"],
      HashKeyRange: { StartingHashKey: "0", EndingHashKey: (mid - 1n).toString() },
    },
    {
      ShardId: "shardId-000000000002",
      ParentShards: ["shardId-000000000000"],
      HashKeyRange: { StartingHashKey: mid.toString(), EndingHashKey: ((1n << 128n) - 1n).toString() },
    },
  ]);
  assert.equal(await nextEvent(), null, "events after the ChildShards event");
  for (let i = 0; i < 120; i++) {
    const s = (await client.send(new DescribeStreamSummaryCommand({ StreamName: name })))
      .StreamDescriptionSummary;
    if (s.StreamStatus === "ACTIVE") break;
    await sleep(250);
  }

  await client.send(new DeleteStreamCommand({ StreamName: name, EnforceConsumerDeletion: true }));
  console.log(`efo_test.cjs: OK (${n} records in ${events} events over HTTP/2, ChildShards after a split)`);
  client.destroy();
}

main().catch((e) => {
  console.error("efo_test.cjs: FAILED", e);
  process.exit(1);
});
