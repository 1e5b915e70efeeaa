package dev.athanor.cli;

import dev.athanor.io.hf.HfModelDir;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
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
 * whose weights do not fit in host memory still runs, with the same tokens and log-probabilities. {@code off} keeps
 * them in memory; {@code auto} moves them to DISK when the job does not fit otherwise and does with them there; a plan
 * file ({@code athanor plan --json}) moves them when it places {@code master} on DISK (its other roles are for
 * training). The KV cache and the activations stay in host memory. CPU only.
 */
final class InferenceOffload {
  private InferenceOffload() {}

  /**
   * Whether the weights go to DISK for a job whose memory with them in memory is {@code inMemory}; checks that the job
   * fits the way it will run ({@link MemoryCheck#require}, with the same advice), before anything is allocated.
   */
  static boolean weightsOnDisk(CommandSpec spec, Options.OffloadOptions o, Footprint inMemory, String job,
      String tokenAdvice, String fixedAdvice) {
    o.check(spec);
    ModelConfig mc = inMemory.config();
    boolean disk;
    if (o.off()) {
      disk = false;
    } else {
      if (inMemory.device().isCuda()) {
        throw Options.usage(spec, "--offload " + o.offload + " needs --device cpu: weights on DISK are read into host memory, "
            + "where the CPU backend runs them");
      }
      if (o.auto()) {
        disk = inMemory.worstShortfall(dev.athanor.memory.MemoryManager.global()) != null;
      } else {
        PlanFile.Request r = PlanFile.read(spec, "--offload", Path.of(o.offload), OffloadPlan.units(mc), inMemory);
        disk = r.diskRoles().contains(Role.MASTER);
      }
    }
    MemoryCheck.require(disk ? onDisk(inMemory) : inMemory, job, tokenAdvice,
        disk ? fixedAdvice : fixedAdvice + (o.off() && !inMemory.device().isCuda() ? ", or --offload auto (the weights then "
            + "stay on DISK and are read unit by unit: " + Footprint.size(onDisk(inMemory).bytes(Tier.HOST))
            + " of host memory)" : ""));
    return disk;
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
  record Opened(Transformer model, OffloadedWeights weights) implements AutoCloseable {
    /** The DISK traffic of the weights, in words ("" when they are in memory). */
    String traffic() {
      if (weights == null) return "";
      TransferStats.Snapshot s = weights.transfers();
      return String.format(Locale.ROOT, "weights on DISK in %s: read %s, waited %.2f s for them",
          weights.files().directory().getParent(), Footprint.size(s.diskToHost()), s.stallNanos() / 1e9);
    }

    @Override
    public void close() {
      try {
        if (weights != null) weights.close();
      } finally {
        model.close();
      }
    }
  }

  /**
   * The model of {@code dir} on {@code device}: loaded into memory, or, with {@code disk}, built without weights,
   * attached to files in {@code offloadDir} (null: the DISK tier's directory) and filled tensor by tensor.
   */
  static Opened open(Path dir, Device device, boolean disk, Path offloadDir) {
    if (!disk) return new Opened(Models.load(dir, device), null);
    Transformer m = Transformer.withoutWeights(HfModelDir.readConfig(dir), device);
    OffloadedWeights w = null;
    try {
      w = OffloadedWeights.attach(m, offloadDir, true);
      HfModelDir.loadInto(dir, m);
      return new Opened(m, w);
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
