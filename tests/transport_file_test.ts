import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { StoqFileOptions, StoqFileResult } from "../mod.ts";
import {
  assertStoqError,
  nativeCounts,
  type Pair,
  pair,
  randomBytes,
  readAll,
  rejection,
  sha256,
  writeAll,
} from "./_helpers.ts";

async function fileHash(path: string): Promise<string> {
  const h = createHash("sha256");
  using file = await Deno.open(path);
  for await (const chunk of file.readable) h.update(chunk);
  return h.digest("hex");
}

async function tempFile(bytes?: Uint8Array): Promise<string> {
  const path = await Deno.makeTempFile({ prefix: "stoq-file-" });
  if (bytes) await Deno.writeFile(path, bytes);
  return path;
}

/** Receives the peer's next unidirectional stream into `dst`. */
async function receiveNext(
  p: Pair,
  dst: string,
  options?: StoqFileOptions,
): Promise<StoqFileResult> {
  const { value: stream } = await p.peer.incomingUnidirectionalStreams
    .getReader().read();
  return await stream!.receiveToFile(dst, options);
}

/**
 * A bidirectional stream the peer receives into `dst`: 1 MiB sent before `receiveToFile` is
 * called, 1 MiB after. `receiving` is asserted by the caller.
 */
async function bidirectionalIntoFile(
  p: Pair,
  dst: string,
  options?: StoqFileOptions,
) {
  const { writable } = await p.conn.createBidirectionalStream();
  const w = writable.getWriter();
  await w.write(randomBytes(1024 * 1024));
  const { value: stream } = await p.peer.incomingBidirectionalStreams
    .getReader().read();
  const receiving = stream!.readable.receiveToFile(dst, options);
  receiving.catch(() => {});
  await w.write(randomBytes(1024 * 1024));
  return { w, stream: stream!, receiving };
}

Deno.test("sendFile → receiveToFile moves 96 MiB byte-identical, reporting progress on both ends", async () => {
  await using p = await pair();
  const src = await tempFile(randomBytes(96 * 1024 * 1024 + 12345));
  const dst = await tempFile();
  try {
    const sentProgress: number[] = [];
    const receivedProgress: number[] = [];
    const received = receiveNext(p, dst, {
      onProgress: (n) => receivedProgress.push(n),
      progressInterval: 8 * 1024 * 1024,
    });
    const sent = await p.conn.sendFile(src, {
      onProgress: (n) => sentProgress.push(n),
    });
    const got = await received;
    const size = (await Deno.stat(src)).size;
    assert.equal(sent.bytes, size);
    assert.equal(got.bytes, size);
    assert.equal(await fileHash(dst), await fileHash(src));
    for (const progress of [sentProgress, receivedProgress]) {
      assert.ok(progress.length >= 8, `${progress.length} progress reports`);
      assert.ok(progress.every((n, i) => i === 0 || n > progress[i - 1]));
      assert.ok(progress.at(-1)! <= size);
    }
  } finally {
    await Deno.remove(src);
    await Deno.remove(dst);
  }
});

Deno.test("receiveToFile also writes what arrived before it was called; an empty file moves as an empty file", async () => {
  await using p = await pair();
  const data = randomBytes(3 * 1024 * 1024);
  const dst = await tempFile();
  const empty = await tempFile(new Uint8Array(0));
  const emptyDst = await tempFile(new Uint8Array([1, 2, 3]));
  try {
    const incoming = p.peer.incomingUnidirectionalStreams.getReader();
    const writable = await p.conn.createUnidirectionalStream();
    const w = writable.getWriter();
    await w.write(data.subarray(0, 1024 * 1024));
    const { value: stream } = await incoming.read();
    // The first megabyte is (at least partly) in msquic's buffers already.
    const receiving = stream!.receiveToFile(dst);
    await w.write(data.subarray(1024 * 1024));
    await w.close();
    assert.equal((await receiving).bytes, data.byteLength);
    assert.equal(await fileHash(dst), sha256(data));

    const [sent, got] = await Promise.all([
      p.conn.sendFile(empty),
      incoming.read().then(({ value }) => value!.receiveToFile(emptyDst)),
    ]);
    assert.equal(sent.bytes, 0);
    assert.equal(got.bytes, 0);
    assert.equal((await Deno.stat(emptyDst)).size, 0);
  } finally {
    for (const f of [dst, empty, emptyDst]) await Deno.remove(f);
  }
});

Deno.test("a file that cannot be opened fails with FILE_ERROR before any stream opens", async () => {
  await using p = await pair();
  const before = p.client.nativeCounts().streams;
  const missing = await rejection(p.conn.sendFile("/nonexistent/stoq-file"));
  assert.match(assertStoqError(missing, "FILE_ERROR").message, /No such file/);
  const directory = await rejection(p.conn.sendFile(Deno.cwd()));
  assertStoqError(directory, "FILE_ERROR");
  const device = await rejection(p.conn.sendFile("/dev/zero"));
  assert.match(
    assertStoqError(device, "FILE_ERROR").message,
    /not a regular file/,
  );
  assert.equal(p.client.nativeCounts().streams, before);
  assertStoqError(await rejection(p.conn.sendFile("")), "INVALID_ARGUMENT");
});

Deno.test("receiveToFile into a path that cannot be written fails with FILE_ERROR", async () => {
  await using p = await pair();
  const writable = await p.conn.createUnidirectionalStream();
  const w = writable.getWriter();
  await w.write(new Uint8Array(10));
  const { value: stream } = await p.peer.incomingUnidirectionalStreams
    .getReader().read();
  const err = await rejection(stream!.receiveToFile("/nonexistent/dir/file"));
  assertStoqError(err, "FILE_ERROR");
  // The stream is untouched and still readable.
  await w.close();
  let n = 0;
  for await (const chunk of stream!) n += chunk.byteLength;
  assert.equal(n, 10);
});

Deno.test("aborting sendFile resets the stream: both ends reject and every native transfer is freed", async () => {
  const src = await tempFile(randomBytes(64 * 1024 * 1024));
  const dst = await tempFile();
  try {
    {
      await using p = await pair();
      const controller = new AbortController();
      const received = receiveNext(p, dst);
      received.catch(() => {}); // asserted below, after the sender's rejection
      const sending = p.conn.sendFile(src, {
        signal: controller.signal,
        progressInterval: 1024 * 1024,
        onProgress: () => controller.abort(new Error("enough")),
      });
      assertStoqError(await rejection(sending), "ABORTED");
      assertStoqError(await rejection(received), "PEER_RESET");
    }
    assert.equal((await nativeCounts()).fileTransfers, 0);
  } finally {
    await Deno.remove(src);
    await Deno.remove(dst);
  }
});

/** Descriptors this process holds open on `path` (from /proc/self/fd). */
function openDescriptors(path: string): number {
  let n = 0;
  for (const { name } of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${name}`) === path) n++;
    } catch { /* closed meanwhile (the directory's own descriptor) */ }
  }
  return n;
}

Deno.test("receiveToFile on a readable already cancelled rejects with CLOSED and leaves the file as it was", async () => {
  await using p = await pair();
  const dst = await tempFile(new Uint8Array([1, 2, 3]));
  try {
    const writable = await p.conn.createUnidirectionalStream();
    const w = writable.getWriter();
    await w.write(new Uint8Array(10));
    const { value: stream } = await p.peer.incomingUnidirectionalStreams
      .getReader().read();
    await stream!.cancel(7);
    assertStoqError(await rejection(stream!.receiveToFile(dst)), "CLOSED");
    assert.deepEqual(await Deno.readFile(dst), new Uint8Array([1, 2, 3]));
  } finally {
    await Deno.remove(dst);
  }
});

Deno.test("aborting receiveToFile on a bidirectional stream rejects with ABORTED once the file is closed, the connection alive", async () => {
  const dst = await Deno.realPath(await tempFile());
  try {
    await using p = await pair();
    const controller = new AbortController();
    const { w, receiving } = await bidirectionalIntoFile(p, dst, {
      signal: controller.signal,
    });
    controller.abort(new Error("enough"));
    assertStoqError(await rejection(receiving), "ABORTED");
    // Settled by the abort itself (not by the stream's end at the idle timeout) and with the
    // descriptor closed, though the stream's other direction is still open.
    assert.equal(openDescriptors(dst), 0);
    p.conn.stats(); // throws once the connection is gone
    // The sender learns that nobody reads any more.
    assertStoqError(
      await rejection(
        (async () => {
          for (;;) await w.write(randomBytes(64 * 1024));
        })(),
      ),
      "PEER_STOPPED",
    );
  } finally {
    await Deno.remove(dst);
  }
});

Deno.test("a disk that fills up during receiveToFile fails it with FILE_ERROR (ENOSPC), the sender sees the stop, the connection lives on", async () => {
  const src = await tempFile(randomBytes(16 * 1024 * 1024));
  try {
    {
      await using p = await pair();
      // Every write to /dev/full fails with ENOSPC, as on a full disk.
      const received = receiveNext(p, "/dev/full");
      received.catch(() => {}); // asserted below
      const sending = p.conn.sendFile(src);
      sending.catch(() => {});
      const err = assertStoqError(await rejection(received), "FILE_ERROR");
      assert.match(err.message, /space/i);
      assertStoqError(await rejection(sending), "PEER_STOPPED");
      // The connection still carries streams both ways.
      const s = await p.conn.createBidirectionalStream();
      await writeAll(s.writable, new Uint8Array([1, 2, 3]));
      const { value: back } = await p.peer.incomingBidirectionalStreams
        .getReader().read();
      assert.equal((await readAll(back!.readable)).byteLength, 3);
    }
    assert.equal((await nativeCounts()).fileTransfers, 0);
  } finally {
    await Deno.remove(src);
  }
});

Deno.test("a peer that resets its side of a bidirectional stream fails receiveToFile with PEER_RESET at once, with the file closed", async () => {
  const dst = await Deno.realPath(await tempFile());
  try {
    await using p = await pair();
    const { w, stream, receiving } = await bidirectionalIntoFile(p, dst);
    await w.abort(9);
    // The receiver's own direction stays open: the stream does not end, the transfer does.
    const err = assertStoqError(await rejection(receiving), "PEER_RESET");
    assert.equal(err.appCode, 9n);
    assert.equal(openDescriptors(dst), 0);
    await writeAll(stream.writable, new Uint8Array([1]));
  } finally {
    await Deno.remove(dst);
  }
});

Deno.test("a file that shrinks while sendFile reads it fails the send with FILE_ERROR and resets the stream", async () => {
  const src = await tempFile(randomBytes(64 * 1024 * 1024));
  const dst = await tempFile();
  try {
    {
      await using p = await pair();
      const received = receiveNext(p, dst);
      received.catch(() => {}); // asserted below
      let truncated = false;
      const sending = p.conn.sendFile(src, {
        progressInterval: 1024 * 1024,
        onProgress: () => {
          if (!truncated) Deno.truncateSync(src, 4 * 1024 * 1024);
          truncated = true;
        },
      });
      const err = assertStoqError(await rejection(sending), "FILE_ERROR");
      assert.match(err.message, new RegExp(src));
      assertStoqError(await rejection(received), "PEER_RESET");
      p.conn.stats(); // throws once the connection is gone
    }
    assert.equal((await nativeCounts()).fileTransfers, 0);
  } finally {
    await Deno.remove(src);
    await Deno.remove(dst);
  }
});

Deno.test("a connection closed in the middle of a transfer fails both ends with its error, the files closed", async () => {
  const src = await Deno.realPath(
    await tempFile(randomBytes(64 * 1024 * 1024)),
  );
  const dst = await Deno.realPath(await tempFile());
  try {
    {
      await using p = await pair();
      const received = receiveNext(p, dst);
      received.catch(() => {}); // asserted below
      let closed = false;
      const sending = p.conn.sendFile(src, {
        progressInterval: 1024 * 1024,
        onProgress: () => {
          if (!closed) p.conn.close({ closeCode: 5, reason: "enough" });
          closed = true;
        },
      });
      assertStoqError(await rejection(sending), "CONNECTION_CLOSED");
      assert.equal(openDescriptors(src), 0);
      const err = assertStoqError(
        await rejection(received),
        "CONNECTION_CLOSED",
      );
      assert.equal(err.appCode, 5n);
      assert.equal(openDescriptors(dst), 0);
    }
    assert.equal((await nativeCounts()).fileTransfers, 0);
  } finally {
    await Deno.remove(src);
    await Deno.remove(dst);
  }
});
