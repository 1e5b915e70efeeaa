package dev.athanor.offload;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.memory.AllocationFailedException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.TrainerTest;
import dev.athanor.train.Trainer;
import dev.athanor.train.checkpoint.CheckpointManager;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * AdamW's moments on the DISK tier, streamed through host staging slots, against the same runs with everything in
 * HOST memory: bit for bit, for GPT-2 and Llama, 1 and 2 threads, with and without gradient accumulation, with chunks
 * that cut tensors; peak HOST bytes lower by the state's size; checkpoints; bad directories and damaged files.
 */
class OffloadedOptimizerTest {
  static final ModelConfig GPT2 = ModelConfig.gpt2(97, 32, 2, 32, 2);
  /** Without BOS/EOS ids (-1): the checkpoint's manifest keeps them as null, so the config reads back equal. */
  static final ModelConfig LLAMA = ModelConfig.llama(97, 32, 2, 48, 4, 2, 40, 10000f, false);
  /** 1000 elements per chunk: not a multiple of the 64-element alignment, so chunks end inside tensors. */
  static final long SMALL_CHUNK = 4000;

  static Path shard(Path dir) {
    return TrainerTest.shard(dir);  // the same 97-token vocabulary as GPT2 and LLAMA here
  }

  static TrainConfig tc(int steps, int accum) {
    return new TrainConfig(steps, 3, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, true, 5);
  }

  /** What a run produced, as raw bits: per-step losses and norms, final masters and moments. */
  record Run(int[] losses, int[] norms, byte[] masters, byte[] m, byte[] v, long peakHost, long stagingBytes) {}

  /** The raw bits of {@code f} (NaN payloads included). */
  static byte[] raw(float[] f) {
    java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(f.length * 4);
    for (float x : f) b.putInt(Float.floatToRawIntBits(x));
    return b.array();
  }

  static byte[] bytes(List<Tensor> ts) {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    for (Tensor t : ts) {
      try (Tensor h = t.to(Tier.HOST)) {
        out.writeBytes(raw(h.toFloatArray()));
      }
    }
    return out.toByteArray();
  }

  static Run train(Path data, ModelConfig cfg, TrainConfig tc, OffloadConfig off) {
    MemoryManager.global().resetPeak();
    long diskBefore = MemoryManager.global().liveBytes(Tier.DISK);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, Device.CPU);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()), off)) {
      model.initialize(8);
      ParameterStore s = model.parameters();
      long onDisk = 0;
      for (Role r : List.of(Role.ADAM_M, Role.ADAM_V)) {
        assertEquals(!off.onDisk(r), s.has(r), r + " in the store");
        assertEquals(off.onDisk(r), t.optimizer().onDisk(r), r + " on DISK");
        if (off.onDisk(r)) onDisk += s.bytes(r);
      }
      assertEquals(diskBefore + onDisk, MemoryManager.global().liveBytes(Tier.DISK));
      List<Integer> losses = new ArrayList<>(), norms = new ArrayList<>();
      while (!t.done()) {
        StepResult r = t.step();
        losses.add(Float.floatToRawIntBits(r.loss()));
        norms.add(Float.floatToRawIntBits(r.gradNorm()));
      }
      long peak = MemoryManager.global().peakBytes(Tier.HOST);  // before the copies below
      return new Run(losses.stream().mapToInt(Integer::intValue).toArray(), norms.stream().mapToInt(Integer::intValue).toArray(),
          raw(s.flat(Role.MASTER).toFloatArray()), bytes(t.optimizer().firstMoments()), bytes(t.optimizer().secondMoments()),
          peak, t.optimizer().stagingBytes());
    } finally {
      assertEquals(diskBefore, MemoryManager.global().liveBytes(Tier.DISK), "DISK bytes given back on close");
    }
  }

  static void assertSameBits(Run want, Run got, String what) {
    assertArrayEquals(want.losses(), got.losses(), what + ": losses");
    assertArrayEquals(want.norms(), got.norms(), what + ": gradient norms");
    assertArrayEquals(want.masters(), got.masters(), what + ": final weights");
    assertArrayEquals(want.m(), got.m(), what + ": first moments");
    assertArrayEquals(want.v(), got.v(), what + ": second moments");
  }

  @Test
  void momentsOnDiskTrainBitIdenticallyToMemory(@TempDir Path tmp) {
    Path data = shard(tmp);
    OffloadConfig disk = OffloadConfig.optimizerStateOnDisk(tmp.resolve("offload"));
    int before = NativeRuntime.cpuThreads();
    try {
      for (int threads : new int[] {1, 2}) {
        NativeRuntime.setCpuThreads(threads);
        for (ModelConfig cfg : List.of(GPT2, LLAMA)) {
          for (int accum : new int[] {1, 2}) {
            String what = cfg.family() + ", " + threads + " threads, accum " + accum;
            Run host = train(data, cfg, tc(4, accum), OffloadConfig.NONE);
            assertSameBits(host, train(data, cfg, tc(4, accum), disk), what + ", whole units");
            assertSameBits(host, train(data, cfg, tc(4, accum), disk.withChunkBytes(SMALL_CHUNK)), what + ", small chunks");
            // only one moment on disk: the other stays in the store
            assertSameBits(host, train(data, cfg, tc(4, accum),
                new OffloadConfig(Set.of(Role.ADAM_V), tmp.resolve("offload"), SMALL_CHUNK)), what + ", ADAM_V only");
          }
        }
      }
    } finally {
      NativeRuntime.setCpuThreads(before);
    }
    try (Stream<Path> left = Files.list(tmp.resolve("offload"))) {
      assertEquals(List.of(), left.toList(), "every offload file and subdirectory is removed on close");
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  @Test
  void smallChunksCutTensorsAndUnits(@TempDir Path tmp) {
    try (Transformer model = Transformer.create(GPT2, Device.CPU);
        UnitFiles files = new UnitFiles(model.parameters(), Set.of(Role.ADAM_M), tmp);
        ChunkStreamer s = new ChunkStreamer(files, SMALL_CHUNK)) {
      ParameterStore store = model.parameters();
      List<Range> chunks = s.chunks(store.all());
      long covered = 0;
      boolean midTensor = false;
      for (Range c : chunks) {
        assertTrue(c.length() <= 1000, c.toString());
        assertTrue(store.units().stream().anyMatch(u -> u.elements().contains(c)), c + " lies within one unit");
        covered += c.length();
        for (ParameterStore.Param p : store.list()) {
          if (c.end() > p.range().start() && c.end() < p.range().end()) midTensor = true;
        }
      }
      assertEquals(store.numel(), covered);
      assertTrue(midTensor, "some chunk ends inside a tensor");
      assertTrue(chunks.size() > store.units().size(), "units are split");
    }
  }

  @Test
  void peakHostBytesDropByTheStateSize(@TempDir Path tmp) {
    Path data = shard(tmp);
    long state;
    try (Transformer m = Transformer.create(GPT2, Device.CPU)) {
      state = m.parameters().bytes(Role.ADAM_M) + m.parameters().bytes(Role.ADAM_V);
    }
    Run host = train(data, GPT2, tc(3, 2), OffloadConfig.NONE);
    Run disk = train(data, GPT2, tc(3, 2), OffloadConfig.optimizerStateOnDisk(tmp).withChunkBytes(SMALL_CHUNK));
    assertEquals(OffloadConfig.STAGING_SLOTS * 2 * SMALL_CHUNK, disk.stagingBytes());
    long saved = host.peakHost() - disk.peakHost();
    assertTrue(saved >= state - disk.stagingBytes() && saved <= state,
        "peak HOST " + host.peakHost() + " in memory vs " + disk.peakHost() + " with the moments on DISK: saved " + saved
            + " bytes, expected the state's " + state + " less the staging " + disk.stagingBytes());
    // under a HOST budget that holds the disk run's peak but not the in-memory run's, the disk run still trains
    MemoryManager mm = MemoryManager.global();
    long budget = mm.budgetBytes(Tier.HOST);
    try {
      long slack = 64 << 10;  // room for this test's own read-back copies at the end of a run
      mm.setBudget(Tier.HOST, disk.peakHost() + slack);
      assertTrue(host.peakHost() > disk.peakHost() + slack);
      assertThrows(dev.athanor.memory.OutOfBudgetException.class, () -> train(data, GPT2, tc(3, 2), OffloadConfig.NONE));
      assertSameBits(host, train(data, GPT2, tc(3, 2), OffloadConfig.optimizerStateOnDisk(tmp).withChunkBytes(SMALL_CHUNK)),
          "within the budget");
    } finally {
      mm.setBudget(Tier.HOST, budget);
    }
  }

  @Test
  void filesAreNamedByUnitAndRoleAndRemovedOnClose(@TempDir Path tmp) throws IOException {
    try (Transformer model = Transformer.create(LLAMA, Device.CPU);
        UnitFiles files = new UnitFiles(model.parameters(), Set.of(Role.ADAM_M, Role.ADAM_V), tmp)) {
      List<String> names;
      try (Stream<Path> l = Files.list(files.directory())) {
        names = l.map(p -> p.getFileName().toString()).sorted().toList();
      }
      List<String> want = new ArrayList<>();
      for (Unit u : model.parameters().units()) {
        want.add(u.name() + ".adam_m.bin");
        want.add(u.name() + ".adam_v.bin");
        assertEquals(u.elements().length() * 4, Files.size(files.file(Role.ADAM_M, u)));
      }
      assertEquals(want.stream().sorted().toList(), names);
      assertTrue(names.contains("block.1.adam_v.bin") && names.contains("embedding.adam_m.bin"), names.toString());
      files.close();
      assertFalse(Files.exists(files.directory()));
    }
  }

  /**
   * Files of a part of the store (a ZeRO shard) with a resident unit keep that unit's part in HOST memory and make no file
   * for it; moving the whole part out and back gives the same values, and only the other units' bytes count as DISK
   * traffic. An unknown unit is refused naming it.
   */
  @Test
  void aShardsResidentUnitHasNoFileAndMovesNoDiskBytes(@TempDir Path tmp) throws IOException {
    try (Transformer model = Transformer.create(LLAMA, Device.CPU)) {
      ParameterStore store = model.parameters();
      List<Unit> units = store.units();
      Unit first = units.get(0), kept = units.get(1), last = units.get(units.size() - 1);
      Range shard = new Range(first.elements().start() + first.elements().length() / 2,
          last.elements().start() + last.elements().length() / 2);  // cuts the first and the last unit
      try (UnitFiles files = new UnitFiles(store, Set.of(Role.ADAM_M), tmp, shard, java.util.Map.of(Role.ADAM_M,
          Set.of(kept.name())))) {
        assertTrue(files.isResident(Role.ADAM_M, kept) && !files.isResident(Role.ADAM_M, first));
        assertEquals(kept.elements().length() * 4, files.residentBytes());
        List<String> names;
        try (Stream<Path> l = Files.list(files.directory())) {
          names = l.map(p -> p.getFileName().toString()).sorted().toList();
        }
        assertFalse(names.contains(kept.name() + ".adam_m.bin"), names.toString());
        assertEquals(units.size() - 1, names.size(), names.toString());
        assertThrows(IllegalArgumentException.class, () -> files.file(Role.ADAM_M, kept));
        float[] values = new float[(int) shard.length()];
        for (int i = 0; i < values.length; i++) values[i] = i * 0.5f - 7f;
        try (Tensor out = Tensor.of(values); Tensor back = Tensor.zeros(dev.athanor.tensor.DType.F32, Device.CPU,
            shard.length())) {
          files.transfer(Role.ADAM_M, shard, out, true);
          files.transfer(Role.ADAM_M, shard, back, false);
          assertArrayEquals(values, back.toFloatArray());
          try (Tensor part = files.slice(Role.ADAM_M, kept.elements())) {
            assertEquals(Tier.HOST, part.tier());
            assertEquals(values[(int) (kept.elements().start() - shard.start())], part.getFloat(0));
          }
        }
        long onDisk = (shard.length() - kept.elements().length()) * 4;
        assertEquals(onDisk, files.stats().snapshot().hostToDisk());
        assertEquals(onDisk, files.stats().snapshot().diskToHost());
      }
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new UnitFiles(store, Set.of(Role.ADAM_M),
          tmp, shard, java.util.Map.of(Role.ADAM_M, Set.of("block.99"))));
      assertTrue(e.getMessage().contains("block.99"), e.getMessage());
    }
  }

  @Test
  void configurationIsValidatedNamingTheValue() {
    var e = assertThrows(IllegalArgumentException.class, () -> new OffloadConfig(Set.of(Role.GRAD_ACC), null, 4096));
    assertTrue(e.getMessage().contains("GRAD_ACC") && e.getMessage().contains("follows GRAD"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> new OffloadConfig(Set.of(Role.WEIGHT), null, 4096));
    assertTrue(e.getMessage().contains("WEIGHT") && e.getMessage().contains("follows MASTER"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> OffloadConfig.optimizerStateOnDisk(null).withChunkBytes(6));
    assertTrue(e.getMessage().contains("6"), e.getMessage());
    assertFalse(OffloadConfig.NONE.enabled());
    assertTrue(OffloadConfig.optimizerStateOnDisk(null).onDisk(Role.ADAM_V));
  }

  @Test
  void checkpointOfARunWithMomentsOnDiskResumesExactly(@TempDir Path tmp) {
    Path data = shard(tmp);
    OffloadConfig disk = OffloadConfig.optimizerStateOnDisk(tmp.resolve("offload")).withChunkBytes(SMALL_CHUNK);
    for (ModelConfig cfg : List.of(GPT2, LLAMA)) {
      Run whole = train(data, cfg, tc(6, 2), disk);
      Path ck = tmp.resolve("ck-" + cfg.family());
      // 3 steps, checkpoint, stop
      try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, Device.CPU);
          Trainer t = new Trainer(model, tc(6, 2), new DataLoader(d, 3, 16, true, 5), disk);
          CheckpointManager cm = new CheckpointManager(ck, 2, true)) {
        model.initialize(8);
        for (int s = 0; s < 3; s++) t.step();
        // the snapshot and the write of the DISK moments go through host memory one tensor at a time
        MemoryManager mm = MemoryManager.global();
        long before = mm.liveBytes(Tier.HOST);
        mm.resetPeak();
        cm.prepare(t);
        cm.save(t);
        cm.awaitWrite();
        ParameterStore ps = model.parameters();
        long largest = 0;
        for (ParameterStore.Param p : ps.list()) largest = Math.max(largest, p.spec().numel() * 4);
        long state = ps.bytes(Role.ADAM_M) + ps.bytes(Role.ADAM_V), masters = ps.parameterCount() * 4;
        long extra = mm.peakBytes(Tier.HOST) - before;
        assertTrue(4 * largest < state, "the bound below is tighter than the state");
        assertTrue(extra <= masters + 4 * largest, "a checkpoint of " + cfg.family() + " took " + extra
            + " bytes of HOST memory: more than the weights' " + masters + " plus 4 tensors of " + largest + " (state "
            + state + ")");
      }
      // resume with the moments on DISK, and also with them in memory: the same checkpoint serves both
      for (OffloadConfig resumeWith : List.of(disk, OffloadConfig.NONE)) {
        try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, Device.CPU);
            Trainer t = new Trainer(model, tc(6, 2), new DataLoader(d, 3, 16, true, 5), resumeWith)) {
          CheckpointManager.latestValid(ck, w -> { }).orElseThrow().restore(t);
          List<Integer> losses = new ArrayList<>();
          while (!t.done()) losses.add(Float.floatToRawIntBits(t.step().loss()));
          String what = cfg.family() + " resumed " + (resumeWith.enabled() ? "on DISK" : "in memory");
          assertArrayEquals(java.util.Arrays.copyOfRange(whole.losses(), 3, 6),
              losses.stream().mapToInt(Integer::intValue).toArray(), what + ": losses");
          assertArrayEquals(whole.masters(), raw(model.parameters().flat(Role.MASTER).toFloatArray()), what + ": weights");
          assertArrayEquals(whole.m(), bytes(t.optimizer().firstMoments()), what + ": first moments");
          assertArrayEquals(whole.v(), bytes(t.optimizer().secondMoments()), what + ": second moments");
        }
      }
    }
  }

  @Test
  void anUnwritableOffloadDirectoryFailsBeforeTrainingNamingTierDirectoryAndBytes(@TempDir Path tmp) throws IOException {
    Path data = shard(tmp);
    Path file = Files.writeString(tmp.resolve("a-file"), "not a directory");
    List<Path> bad = new ArrayList<>(List.of(file.resolve("offload")));
    Path readOnly = Files.createDirectory(tmp.resolve("read-only"));
    if (readOnly.toFile().setWritable(false, false) && !Files.isWritable(readOnly)) bad.add(readOnly);  // not as root
    for (Path dir : bad) {
      try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU)) {
        long state = model.parameters().bytes(Role.ADAM_M) + model.parameters().bytes(Role.ADAM_V);
        long hostBefore = MemoryManager.global().liveBytes(Tier.HOST), diskBefore = MemoryManager.global().liveBytes(Tier.DISK);
        var e = assertThrows(AllocationFailedException.class, () -> new Trainer(model, tc(2, 1),
            new DataLoader(d, 3, 16, true, 5), OffloadConfig.optimizerStateOnDisk(dir)));
        String msg = e.getMessage();
        assertTrue(msg.contains("DISK") && msg.contains(dir.toString()) && msg.contains(Long.toString(state)), msg);
        assertEquals(Tier.DISK, e.tier());
        assertEquals(state, e.requestedBytes());
        assertEquals(diskBefore, MemoryManager.global().liveBytes(Tier.DISK), "nothing left on DISK");
        assertEquals(hostBefore, MemoryManager.global().liveBytes(Tier.HOST), "no gradient buffers left behind");
      }
    }
    readOnly.toFile().setWritable(true, false);
  }

  @Test
  void aDiskBudgetBelowTheMomentsFailsBeforeTrainingAndLeavesNothing(@TempDir Path tmp) throws IOException {
    Path data = shard(tmp);
    MemoryManager mm = MemoryManager.global();
    long budget = mm.budgetBytes(Tier.DISK);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU)) {
      long m = model.parameters().bytes(Role.ADAM_M);
      mm.setBudget(Tier.DISK, mm.liveBytes(Tier.DISK) + m + m / 2);  // room for one moment, not both
      var e = assertThrows(dev.athanor.memory.OutOfBudgetException.class, () -> new Trainer(model, tc(2, 1),
          new DataLoader(d, 3, 16, true, 5), OffloadConfig.optimizerStateOnDisk(tmp.resolve("offload"))));
      assertEquals(Tier.DISK, e.tier());
      assertTrue(e.getMessage().contains("DISK"), e.getMessage());
      try (Stream<Path> left = Files.list(tmp.resolve("offload"))) {
        assertEquals(List.of(), left.toList(), "no offload file or directory left behind");
      }
    } finally {
      mm.setBudget(Tier.DISK, budget);
    }
  }

  @Test
  void aTruncatedOrDeletedStateFileIsAClearErrorNamingIt(@TempDir Path tmp) throws IOException {
    Path data = shard(tmp);
    for (boolean delete : new boolean[] {false, true}) {
      try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(GPT2, Device.CPU);
          Trainer t = new Trainer(model, tc(4, 1), new DataLoader(d, 3, 16, true, 5),
              OffloadConfig.optimizerStateOnDisk(tmp).withChunkBytes(SMALL_CHUNK))) {
        model.initialize(8);
        t.step();
        Path victim = t.optimizer().offloadFiles().file(Role.ADAM_V, model.parameters().unit("block.1"));
        if (delete) {
          Files.delete(victim);
        } else {
          try (FileChannel ch = FileChannel.open(victim, StandardOpenOption.WRITE)) {
            ch.truncate(ch.size() / 3);
          }
        }
        var e = assertThrows(OffloadIOException.class, t::step);
        assertEquals(victim, e.file());
        assertTrue(e.getMessage().contains(victim.toString()) && e.getMessage().contains("DISK")
            && e.getMessage().contains("ADAM_V"), e.getMessage());
        assertThrows(IllegalStateException.class, t::step, "the state is inconsistent after a failed update");
      }
    }
  }
}
