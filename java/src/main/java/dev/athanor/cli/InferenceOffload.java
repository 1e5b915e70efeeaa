package dev.athanor.cli;

import dev.athanor.io.hf.HfModelDir;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.Footprint.Component;
import dev.athanor.nn.KvCache;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.KvCacheOnDisk;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadedWeights;
import dev.athanor.offload.TransferStats;
import dev.athanor.offload.UnitPager;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import picocli.CommandLine.Model.CommandSpec;

/**
 * {@code --offload} for the commands that only run a model ({@code generate}, {@code score}): the weights stay in
 * memory, or live on the DISK tier and are read unit by unit as the model runs (the next unit read ahead), so a model
 * whose weights do not fit in host memory still runs, with the same tokens and log-probabilities; {@code generate}'s
 * KV cache can live on DISK too ({@link KvCacheOnDisk}: each layer's keys and values read into one of two host windows
 * before the layer attends, its new rows written behind). {@code off} keeps everything in memory; {@code auto} keeps
 * everything in memory when that fits, else puts on DISK the one of the two (weights, KV cache) whose files are
 * smaller, as that reads fewer bytes per token, when that alone fits, else the other alone, else both (else the job is
 * refused, naming the short tier and the bytes); a plan file ({@code athanor plan --json}) moves the weights when it
 * places {@code master} on DISK (its other roles are for training) and keeps the KV cache in memory. The activations
 * stay in host memory. CPU only: on CUDA nothing goes to DISK.
 */
final class InferenceOffload {
  private InferenceOffload() {}

  /**
   * Where a job's weights and KV cache are, and the memory it needs so.
   *
   * @param kv the KV cache's layout, or null for a job without one ({@code score})
   */
  record Placement(boolean weightsOnDisk, boolean kvOnDisk, Footprint footprint, KvCache.Layout kv) {
    /** What was placed where, in words, e.g. "weights in memory (1.2 MiB), KV cache on DISK (...)". */
    String describe() {
      Footprint f = footprint;
      String w = weightsOnDisk ? "weights on DISK (" + Footprint.size(f.bytes(Component.WEIGHTS, Set.of(Tier.DISK)))
          + " in files, " + Footprint.size(f.bytes(Component.WEIGHTS, Set.of(Tier.HOST))) + " of host windows)"
          : "weights in memory (" + Footprint.size(f.bytes(Component.WEIGHTS, Set.of(Tier.HOST))) + ")";
      if (kv == null) return w;
      String k = kvOnDisk ? "KV cache on DISK (" + Footprint.size(f.bytes(Component.KV_CACHE, Set.of(Tier.DISK)))
          + " in files, " + Footprint.size(f.bytes(Component.KV_CACHE, Set.of(Tier.HOST))) + " of host windows)"
          : "KV cache in memory (" + Footprint.size(f.bytes(Component.KV_CACHE, Set.of(Tier.HOST))) + ")";
      return w + ", " + k + "; host memory " + Footprint.size(f.bytes(Tier.HOST)) + " of the HOST budget "
          + Footprint.size(dev.athanor.memory.MemoryManager.global().budgetBytes(Tier.HOST));
    }
  }

  /**
   * Whether the weights go to DISK for a job without a KV cache whose memory with them in memory is {@code inMemory};
   * see {@link #place}.
   */
  static boolean weightsOnDisk(CommandSpec spec, Options.OffloadOptions o, Footprint inMemory, String job,
      String tokenAdvice, String fixedAdvice) {
    return place(spec, o, inMemory, null, job, tokenAdvice, fixedAdvice).weightsOnDisk();
  }

  /**
   * Where the weights and the KV cache of layout {@code kv} (null: none) go for a job whose memory with both in memory
   * is {@code inMemory}; checks that the job fits the way it will run ({@link MemoryCheck#require}, with the same
   * advice), before anything is allocated.
   */
  static Placement place(CommandSpec spec, Options.OffloadOptions o, Footprint inMemory, KvCache.Layout kv, String job,
      String tokenAdvice, String fixedAdvice) {
    o.check(spec);
    ModelConfig mc = inMemory.config();
    Placement p;
    if (o.off()) {
      p = new Placement(false, false, inMemory, kv);
    } else {
      if (inMemory.device().isCuda()) {
        throw Options.usage(spec, "--offload " + o.offload + " needs --device cpu: weights on DISK are read into host memory, "
            + "where the CPU backend runs them");
      }
      if (o.auto()) {
        p = auto(inMemory, kv);
      } else {
        PlanFile.Request r = PlanFile.read(spec, "--offload", Path.of(o.offload), OffloadPlan.units(mc), inMemory);
        boolean disk = r.diskRoles().contains(Role.MASTER);
        p = new Placement(disk, false, disk ? onDisk(inMemory) : inMemory, kv);
      }
    }
    Placement all = kv == null ? null : placed(inMemory, kv, true, true);
    MemoryCheck.require(p.footprint(), job, tokenAdvice,
        p.weightsOnDisk() ? fixedAdvice : fixedAdvice + (o.off() && !inMemory.device().isCuda() ? ", or --offload auto (the "
            + "weights then stay on DISK and are read unit by unit: " + Footprint.size((all != null ? all.footprint()
            : onDisk(inMemory)).bytes(Tier.HOST)) + " of host memory" + (all != null ? " with the KV cache on DISK too" : "")
            + ")" : ""));
    return p;
  }

  /**
   * {@code --offload auto}: the first placement that fits of everything in memory, the smaller of the weights' and the
   * KV cache's files on DISK, the other, both; when none fits, both (the check then says what is short).
   */
  private static Placement auto(Footprint inMemory, KvCache.Layout kv) {
    dev.athanor.memory.MemoryManager mm = dev.athanor.memory.MemoryManager.global();
    List<Placement> order = new java.util.ArrayList<>();
    order.add(new Placement(false, false, inMemory, kv));
    if (kv == null) {
      order.add(placed(inMemory, null, true, false));
    } else {
      Placement w = placed(inMemory, kv, true, false), k = placed(inMemory, kv, false, true);
      long wBytes = w.footprint().bytes(Component.WEIGHTS, Set.of(Tier.DISK));
      long kBytes = k.footprint().bytes(Component.KV_CACHE, Set.of(Tier.DISK));
      order.addAll(kBytes < wBytes ? List.of(k, w) : List.of(w, k));
      order.add(placed(inMemory, kv, true, true));
    }
    for (Placement p : order) if (p.footprint().worstShortfall(mm) == null) return p;
    return order.get(order.size() - 1);
  }

  private static Placement placed(Footprint inMemory, KvCache.Layout kv, boolean weights, boolean cache) {
    Footprint f = weights ? onDisk(inMemory) : inMemory;
    if (cache) f = f.withKvCacheOnDisk(KvCacheOnDisk.hostBytes(kv), KvCacheOnDisk.diskBytes(kv));
    return new Placement(weights, cache, f, kv);
  }

  /**
   * {@code inMemory} with the weights on DISK: their host windows (a few units) instead of all of them, and the
   * weights read one tensor at a time when loading.
   */
  static Footprint onDisk(Footprint inMemory) {
    ModelConfig mc = inMemory.config();
    List<Long> units = OffloadPlan.units(mc).stream().map(OffloadPlan.UnitSize::elements).toList();
    Footprint f = inMemory.withStateOnDisk(Set.of(Role.MASTER), 0, UnitPager.windowBound(units, true, false, false), 0);
    return f.withStreamedLoading();
  }

  /** A model opened for a command: in memory, or with its weights on DISK. */
  record Opened(Transformer model, OffloadedWeights weights, KvCacheOnDisk kv) implements AutoCloseable {
    /** The DISK traffic of the weights and of the KV cache, in words ("" when both are in memory). */
    String traffic() {
      List<String> parts = new java.util.ArrayList<>();
      if (weights != null) {
        TransferStats.Snapshot s = weights.transfers();
        parts.add(String.format(Locale.ROOT, "weights on DISK in %s: read %s, waited %.2f s for them",
            weights.files().directory().getParent(), Footprint.size(s.diskToHost()), s.stallNanos() / 1e9));
      }
      if (kv != null) {
        TransferStats.Snapshot s = kv.transfers();
        parts.add(String.format(Locale.ROOT, "KV cache on DISK in %s: read %s, wrote %s, waited %.2f s for it",
            kv.directory(), Footprint.size(s.diskToHost()), Footprint.size(s.hostToDisk()), s.stallNanos() / 1e9));
      }
      return String.join("; ", parts);
    }

    @Override
    public void close() {
      try {
        if (kv != null) kv.close();
      } finally {
        try {
          if (weights != null) weights.close();
        } finally {
          model.close();
        }
      }
    }
  }

  /**
   * The model of {@code dir} on {@code device}: loaded into memory, or, with {@code disk}, built without weights,
   * attached to files in {@code offloadDir} (null: the DISK tier's directory) and filled tensor by tensor.
   */
  static Opened open(Path dir, Device device, boolean disk, Path offloadDir) {
    return open(dir, device, disk, false, offloadDir);
  }

  /** As {@link #open(Path, Device, boolean, Path)}, with the KV caches the model makes on DISK too when {@code kvOnDisk}. */
  static Opened open(Path dir, Device device, boolean disk, boolean kvOnDisk, Path offloadDir) {
    if (!disk) {
      Transformer m = Models.load(dir, device);
      try {
        return new Opened(m, null, kvOnDisk ? KvCacheOnDisk.attach(m, offloadDir, true) : null);
      } catch (RuntimeException e) {
        m.close();
        throw e;
      }
    }
    Transformer m = Transformer.withoutWeights(HfModelDir.readConfig(dir), device);
    OffloadedWeights w = null;
    try {
      w = OffloadedWeights.attach(m, offloadDir, true);
      HfModelDir.loadInto(dir, m);
      return new Opened(m, w, kvOnDisk ? KvCacheOnDisk.attach(m, offloadDir, true) : null);
    } catch (RuntimeException e) {
      try {
        if (w != null) w.close();
      } finally {
        m.close();
      }
      throw e;
    }
  }
}
