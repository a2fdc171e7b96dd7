import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  StoqEndpoint,
  type StoqReceiveLoan,
  type StoqWriteBuffer,
} from "../mod.ts";
import {
  assertStoqError,
  hashStream,
  pair,
  randomBytes,
  readAll,
  rejection,
  sha256,
  writeAll,
} from "./_helpers.ts";

Deno.test("write buffers filled in place arrive intact, interleaved in order with copied writes", async () => {
  await using p = await pair();
  const data = randomBytes(32 * 1024 * 1024 + 777);
  const { readable, writable } = await p.conn.createBidirectionalStream();
  const received = (async () => {
    const { value } = await p.peer.incomingBidirectionalStreams.getReader()
      .read();
    return await hashStream(value!.readable);
  })();
  const w = writable.getWriter();
  let off = 0;
  for (let i = 0; off < data.byteLength; i++) {
    if (i % 3 === 2) {
      // Every third piece is a plain (copied) write of an odd size.
      const n = Math.min(10_000, data.byteLength - off);
      await w.write(data.subarray(off, off + n));
      off += n;
      continue;
    }
    const buffer = await writable.getWriteBuffer();
    const n = Math.min(buffer.bytes.byteLength, data.byteLength - off);
    buffer.bytes.set(data.subarray(off, off + n));
    await buffer.commit(n);
    // Committed: the view is detached, so it can no longer touch the bytes in flight.
    assert.equal(buffer.bytes.byteLength, 0);
    off += n;
  }
  await w.close();
  const got = await received;
  assert.equal(got.bytes, data.byteLength);
  assert.equal(got.hash, sha256(data));
  readable.cancel().catch(() => {});
  const counts = p.client.nativeCounts();
  assert.equal(counts.sendsAllocated, counts.sendsFreed);
});

Deno.test("a write buffer given back unsent returns to the pool; committing twice or out of range is refused", async () => {
  await using p = await pair();
  const writable = await p.conn.createUnidirectionalStream();
  const first = await writable.getWriteBuffer();
  first[Symbol.dispose]();
  assert.equal(first.bytes.byteLength, 0);
  assertStoqError(await rejection(first.commit(1)), "INVALID_ARGUMENT");
  const second = await writable.getWriteBuffer();
  assertStoqError(
    await rejection(second.commit(65537)),
    "INVALID_ARGUMENT",
  );
  await second.commit(0); // nothing to send: the buffer goes back
  const third = await writable.getWriteBuffer();
  third.bytes.fill(5, 0, 100);
  await third.commit(100);
  assertStoqError(await rejection(third.commit(100)), "INVALID_ARGUMENT");
  await writable.close();
  const { value } = await p.peer.incomingUnidirectionalStreams.getReader()
    .read();
  const back = await hashStream(value!);
  assert.equal(back.bytes, 100);
  assert.equal(back.hash, sha256(new Uint8Array(100).fill(5)));
});

Deno.test("write buffers committed after the writable was aborted reject with its reason and go back to the pool", async () => {
  await using p = await pair();
  const writable = await p.conn.createUnidirectionalStream();
  const before = p.client.nativeCounts().poolSlotsInUse;
  const buffers = await Promise.all(
    Array.from({ length: 5 }, () => writable.getWriteBuffer()),
  );
  assert.equal(p.client.nativeCounts().poolSlotsInUse, before + 5);
  await writable.abort(3);
  for (const buffer of buffers) {
    assert.equal(await rejection(buffer.commit(100)), 3);
    assert.equal(buffer.bytes.byteLength, 0);
  }
  assert.equal(p.client.nativeCounts().poolSlotsInUse, before);
});

Deno.test("an in-place reader reads 64 MiB without copies; released loans are detached", async () => {
  await using p = await pair();
  const data = randomBytes(64 * 1024 * 1024);
  const writable = await p.conn.createUnidirectionalStream();
  const sending = (async () => {
    const w = writable.getWriter();
    for (let off = 0; off < data.byteLength; off += 256 * 1024) {
      await w.write(data.subarray(off, off + 256 * 1024));
    }
    await w.close();
  })();
  const { value: readable } = await p.peer.incomingUnidirectionalStreams
    .getReader().read();
  const reader = readable!.getInPlaceReader();
  assert.ok(readable!.locked);
  const hash = createHash("sha256");
  let bytes = 0;
  let loans = 0;
  for (let loan; (loan = await reader.read()) !== null; loans++) {
    for (const chunk of loan.chunks) hash.update(chunk);
    assert.equal(
      loan.chunks.reduce((n, c) => n + c.byteLength, 0),
      loan.byteLength,
    );
    bytes += loan.byteLength;
    loan.release();
    assert.ok(loan.chunks.every((c) => c.byteLength === 0));
  }
  await sending;
  await reader.closed;
  assert.equal(bytes, data.byteLength);
  assert.equal(hash.digest("hex"), sha256(data));
  assert.ok(loans > 1);
});

Deno.test("loans may come back in any order: the bytes are completed once every earlier loan is back", async () => {
  await using p = await pair();
  const first = randomBytes(300_000);
  const second = randomBytes(200_000);
  const writable = await p.conn.createUnidirectionalStream();
  const w = writable.getWriter();
  await w.write(first);
  const { value: readable } = await p.peer.incomingUnidirectionalStreams
    .getReader().read();
  const reader = readable!.getInPlaceReader();
  const loans: StoqReceiveLoan[] = [];
  let lent = 0;
  while (lent < first.byteLength) {
    const loan = (await reader.read())!;
    loans.push(loan);
    lent += loan.byteLength;
  }
  await w.write(second);
  await w.close();
  while (lent < first.byteLength + second.byteLength) {
    const loan = (await reader.read())!;
    loans.push(loan);
    lent += loan.byteLength;
  }
  const hash = createHash("sha256");
  for (const loan of loans) for (const c of loan.chunks) hash.update(c);
  assert.equal(
    hash.digest("hex"),
    sha256(new Uint8Array([...first, ...second])),
  );
  // Newest first: nothing is completed until the oldest comes back, then everything is.
  for (const loan of loans.toReversed()) loan.release();
  assert.equal(await reader.read(), null);
  await w.closed;
});

Deno.test("loans still out when the connection closes are detached: their views never reach freed memory", async () => {
  await using p = await pair();
  const writable = await p.conn.createUnidirectionalStream();
  const w = writable.getWriter();
  await w.write(randomBytes(100_000));
  const { value: readable } = await p.peer.incomingUnidirectionalStreams
    .getReader().read();
  const reader = readable!.getInPlaceReader();
  const loan = (await reader.read())!;
  assert.ok(loan.byteLength > 0);
  p.peer.close();
  await p.peer.finished;
  assert.ok(loan.chunks.every((c) => c.byteLength === 0));
  loan.release(); // harmless now
  assertStoqError(await rejection(reader.read()), "CONNECTION_CLOSED");
});

Deno.test("send stats say where a stream's sending waited", async () => {
  await using p = await pair();
  const { writable } = await p.conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(randomBytes(1024 * 1024));
  const stats = writable.stats();
  for (const [key, value] of Object.entries(stats)) {
    assert.ok(Number.isFinite(value) && value >= 0, key);
  }
  w.releaseLock();
  await writable.abort(0);
});

Deno.test("writes beyond the send pool's capacity wait for slots and all arrive intact", async () => {
  // 100 streams × 1.5 MiB = 150 MiB written at once, more than twice the 64 MiB pool, to a
  // server in another process that answers only at the end: nothing but the completions that
  // return slots can wake this side meanwhile.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      new URL("./fixtures/hash_server.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let hello = "";
    while (!hello.includes("\n")) hello += (await lines.read()).value ?? "";
    lines.releaseLock();
    child.stdout.cancel().catch(() => {});
    const { port, ca } = JSON.parse(hello);
    await using client = new StoqEndpoint();
    const conn = await client.connect({
      hostname: "::1",
      port,
      alpnProtocols: ["stoq-hash"],
      caCerts: [ca],
    });
    const data = randomBytes(1536 * 1024);
    const want = `${data.byteLength} ${sha256(data)}`;
    const replies = await Promise.all(
      Array.from({ length: 100 }, async () => {
        const { readable, writable } = await conn.createBidirectionalStream();
        await writeAll(writable, data, 64 * 1024);
        return new TextDecoder().decode(await readAll(readable));
      }),
    );
    for (const reply of replies) assert.equal(reply, want);
    conn.close();
  } finally {
    child.kill();
    await child.status;
  }
});

Deno.test("a getWriteBuffer() or write waiting for the send pool rejects when its connection closes, and takes no slot after", async () => {
  await using p = await pair();
  // The application holds every slot of the 64 MiB pool (1,024 slots of 64 KiB).
  const holder = await p.conn.createUnidirectionalStream();
  const held: StoqWriteBuffer[] = [];
  while (p.client.nativeCounts().poolSlotsInUse < 1024) {
    held.push(await holder.getWriteBuffer());
  }
  const stream = await p.conn.createUnidirectionalStream();
  const waiting = stream.getWriteBuffer();
  const writing = stream.getWriter().write(randomBytes(100_000));
  waiting.catch(() => {});
  writing.catch(() => {});
  p.conn.close({ closeCode: 3 });
  assertStoqError(await rejection(waiting), "CONNECTION_CLOSED");
  assertStoqError(await rejection(writing), "CONNECTION_CLOSED");
  for (const buffer of held) buffer[Symbol.dispose]();
  assert.equal(p.client.nativeCounts().poolSlotsInUse, 0);
});
