package dev.athanor.offload;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.infer.Generator;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.KvCache;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.DType;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The KV cache on the DISK tier ({@link KvCacheOnDisk}): generation (greedy and seeded sampling) and the cached
 * logits are the in-memory cache's, bit for bit, for GPT-2 and Llama (grouped-query attention), batch 1 and 2, 1 and
 * 2 threads, with the weights in memory and on DISK too; the DISK bytes are the planned ones, the traffic is {@link
 * KvCacheOnDisk#stepRead} and {@link KvCacheOnDisk#stepWritten} summed over the steps, the HOST peak stays within a
 * budget the in-memory cache exceeds; a file truncated or deleted under decoding gives an error naming the tier, the
 * file and the bytes.
 */
class KvCacheOnDiskTest {
  /** Rows of 1 KiB: the cache's 12 tokens span 3 pages, so reads and writes cross page boundaries. */
  static final ModelConfig GPT2 = ModelConfig.gpt2(96, 32, 3, 256, 4);
  /** Grouped-query attention: 4 query heads share 2 key/value heads (rows of 256 bytes). */
  static final ModelConfig LLAMA = ModelConfig.llama(96, 32, 3, 128, 4, 2, 160, 10000f, false);
  static final int PROMPT = 4, STEPS = 5, CAPACITY = 12;

  @TempDir Path tmp;

  /** What a run produced and moved. */
  record Run(List<int[]> greedy, List<int[]> sampled, List<float[]> logits, TransferStats.Snapshot traffic, long diskBytes) {}

  private static List<int[]> prompts(int batch) {
    List<int[]> p = new ArrayList<>();
    for (int b = 0; b < batch; b++) p.add(new int[] {3 + b, 17, 40 + 5 * b, 9});
    return p;
  }

  private Run run(ModelConfig cfg, int batch, int threads, boolean weightsOnDisk, boolean kvOnDisk, boolean prefetch) {
    NativeRuntime.setCpuThreads(threads);
    MemoryManager mm = MemoryManager.global();
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      m.initialize(7);
      OffloadedWeights w = weightsOnDisk ? OffloadedWeights.attach(m, tmp.resolve("w"), true) : null;
      KvCacheOnDisk kv = kvOnDisk ? KvCacheOnDisk.attach(m, tmp.resolve("kv"), prefetch) : null;
      try {
        Generator g = new Generator(m);
        List<int[]> greedy = g.generate(prompts(batch), new SamplingConfig(0f, 0, 1f, 0, 6, false), null);
        List<int[]> sampled = g.generate(prompts(batch), new SamplingConfig(0.9f, 20, 0.95f, 5, 6, false), null);
        List<float[]> logits = new ArrayList<>();
        TransferStats.Snapshot before = kv == null ? TransferStats.Snapshot.ZERO : kv.transfers();
        long disk0 = mm.liveBytes(Tier.DISK), disk;
        try (KvCache c = m.newCache(batch, CAPACITY)) {
          disk = mm.liveBytes(Tier.DISK) - disk0;
          int[] ids = new int[batch * PROMPT];
          for (int i = 0; i < ids.length; i++) ids[i] = (5 * i + 1) % cfg.vocabSize();
          logits.add(m.forwardCached(c, ids, batch, PROMPT));
          for (int s = 0; s < STEPS; s++) {
            int[] one = new int[batch];
            for (int b = 0; b < batch; b++) one[b] = (11 * s + 7 * b + 2) % cfg.vocabSize();
            logits.add(m.forwardCached(c, one, batch, 1));
          }
        }
        TransferStats.Snapshot traffic = kv == null ? TransferStats.Snapshot.ZERO : kv.transfers().minus(before);
        return new Run(greedy, sampled, logits, traffic, disk);
      } finally {
        if (kv != null) kv.close();
        if (w != null) w.close();
      }
    } finally {
      NativeRuntime.setCpuThreads(1);
    }
  }

  @Test
  void decodingWithTheCacheOnDiskGivesTheInMemoryBits() {
    for (ModelConfig cfg : List.of(GPT2, LLAMA)) {
      for (int batch : new int[] {1, 2}) {
        Run ref = run(cfg, batch, 1, false, false, true);
        KvCache.Layout layout = Footprint.kvCacheLayout(cfg, DType.F32, batch, CAPACITY);
        long read = KvCacheOnDisk.stepRead(layout, 0, PROMPT), written = KvCacheOnDisk.stepWritten(layout, 0, PROMPT);
        for (int s = 0; s < STEPS; s++) {
          read += KvCacheOnDisk.stepRead(layout, PROMPT + s, 1);
          written += KvCacheOnDisk.stepWritten(layout, PROMPT + s, 1);
        }
        long planned = Footprint.decoding(cfg, Device.CPU, DType.F32, batch, PROMPT, CAPACITY)
            .withKvCacheOnDisk(KvCacheOnDisk.hostBytes(layout), KvCacheOnDisk.diskBytes(layout)).bytes(Tier.DISK);
        for (int threads : new int[] {1, 2}) {
          for (boolean weights : new boolean[] {false, true}) {
            for (boolean prefetch : threads == 1 && !weights ? new boolean[] {true, false} : new boolean[] {true}) {
              String what = cfg.family() + " batch " + batch + ", " + threads + " threads, weights " + (weights ? "on DISK" : "in memory")
                  + (prefetch ? "" : ", no read-ahead");
              Run disk = run(cfg, batch, threads, weights, true, prefetch);
              for (int i = 0; i < batch; i++) {
                assertArrayEquals(ref.greedy().get(i), disk.greedy().get(i), what + ": greedy tokens of prompt " + i);
                assertArrayEquals(ref.sampled().get(i), disk.sampled().get(i), what + ": sampled tokens of prompt " + i);
              }
              for (int s = 0; s < ref.logits().size(); s++) {
                assertArrayEquals(ref.logits().get(s), disk.logits().get(s), what + ": logits of step " + s + ", to the bit");
              }
              assertEquals(planned, disk.diskBytes(), what + ": DISK bytes of the cache's files");
              assertEquals(read, disk.traffic().diskToHost(), what + ": bytes read");
              assertEquals(written, disk.traffic().hostToDisk(), what + ": bytes written");
            }
          }
        }
      }
    }
  }

  @Test
  void theHostPeakStaysWithinABudgetTheInMemoryCacheExceeds() {
    ModelConfig cfg = ModelConfig.gpt2(96, 256, 8, 64, 2);  // KV cache of 8 x 256 tokens: 8 x 4 x the windows
    int batch = 4, capacity = 256;
    SamplingConfig greedy = new SamplingConfig(0f, 0, 1f, 0, capacity - PROMPT, false);  // a cache of capacity tokens
    MemoryManager mm = MemoryManager.global();
    long budget = mm.budgetBytes(Tier.HOST);
    KvCache.Layout layout = Footprint.kvCacheLayout(cfg, DType.F32, batch, capacity);
    Footprint inMemory = Footprint.decoding(cfg, Device.CPU, DType.F32, batch, PROMPT, capacity);
    Footprint onDisk = inMemory.withKvCacheOnDisk(KvCacheOnDisk.hostBytes(layout), KvCacheOnDisk.diskBytes(layout));
    try (Transformer m = Transformer.create(cfg, Device.CPU)) {
      m.initialize(3);
      List<int[]> ref = new Generator(m).generate(prompts(batch), greedy, null);
      long live = mm.liveBytes(Tier.HOST);
      long limit = live + onDisk.bytes(Tier.HOST) - inMemory.bytes(Footprint.Component.WEIGHTS, java.util.Set.of(Tier.HOST));
      assertTrue(live + inMemory.bytes(Tier.HOST) - inMemory.bytes(Footprint.Component.WEIGHTS, java.util.Set.of(Tier.HOST))
          > limit, "the in-memory cache does not fit");
      mm.setBudget(Tier.HOST, limit);
      mm.resetPeak();
      List<int[]> got;
      try (KvCacheOnDisk kv = KvCacheOnDisk.attach(m, tmp, true)) {
        got = new Generator(m).generate(prompts(batch), greedy, null);
      }
      long peak = mm.peakBytes(Tier.HOST);
      assertTrue(peak <= limit, "HOST peak " + peak + " within the budget " + limit);
      for (int i = 0; i < batch; i++) assertArrayEquals(ref.get(i), got.get(i), "tokens of prompt " + i);
      mm.setBudget(Tier.HOST, budget);
      assertThrows(dev.athanor.memory.OutOfBudgetException.class, () -> {
        mm.setBudget(Tier.HOST, limit);
        try {
          new Generator(m).generate(prompts(batch), greedy, null);
        } finally {
          mm.setBudget(Tier.HOST, budget);
        }
      }, "the in-memory cache is refused by the same budget");
    } finally {
      mm.setBudget(Tier.HOST, budget);
    }
  }

  @Test
  void aFileTruncatedOrDeletedUnderDecodingIsNamed() throws Exception {
    for (boolean delete : new boolean[] {false, true}) {
      try (Transformer m = Transformer.create(GPT2, Device.CPU); KvCacheOnDisk kv = KvCacheOnDisk.attach(m, tmp, true)) {
        m.initialize(7);
        KvCache c = m.newCache(1, CAPACITY);
        try {
          m.forwardCached(c, new int[] {1, 2, 3, 4}, 1, 4);
          Path f = kv.files().get(2);  // layer 1's keys
          assertTrue(f.getFileName().toString().equals("layer.1.keys.bin"), f.toString());
          if (delete) {
            Files.delete(f);
          } else {
            try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
              ch.truncate(100);
            }
          }
          OffloadIOException e = assertThrows(OffloadIOException.class, () -> m.forwardCached(c, new int[] {5}, 1, 1));
          String msg = e.getMessage();
          assertTrue(msg.contains("DISK tier") && msg.contains(f.toString()) && msg.contains("4096 bytes")
              && msg.contains("keys of unit layer.1"), msg);
        } finally {
          try {
            c.close();
          } catch (RuntimeException ignored) {
            // a read ahead of the broken file may fail again; the files are removed all the same
          }
        }
        assertTrue(kv.files().isEmpty(), "the cache's files are removed");
      }
    }
  }
}
