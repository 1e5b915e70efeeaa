package dev.athanor.cli;

import dev.athanor.dist.plan.ParallelPlanner;
import dev.athanor.memory.InsufficientMemoryException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.Footprint.Component;
import dev.athanor.nn.Footprint.Shortfall;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.offload.OffloadPlan;
import dev.athanor.offload.OffloadPlanner;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.train.TrainConfig;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The commands' check that a job fits in memory before anything large is allocated: one message saying what is
 * needed (per component), what is there, and what to do, and exit code 1 (a failure, not a usage error: the same
 * command works on a machine with more memory).
 */
final class MemoryCheck {
  private MemoryCheck() {}

  /** The components that do not shrink with the batch or the sequence. */
  private static final Set<Component> FIXED = EnumSet.of(Component.WEIGHTS, Component.GRADIENTS, Component.OPTIMIZER,
      Component.LOADING, Component.CHECKPOINT);

  /**
   * Throws {@link InsufficientMemoryException} when {@code need} does not fit: "not enough memory to {@code job}: it
   * needs ... but ...", then what to do: {@code fixedAdvice} when the parts that do not depend on the tokens at once
   * (weights, gradients, optimizer state) alone do not fit, else {@code tokenAdvice}; and, when a budget is what
   * limits, the flag that raises it.
   */
  static void require(Footprint need, String job, String tokenAdvice, String fixedAdvice) {
    MemoryManager mm = MemoryManager.global();
    Shortfall s = need.worstShortfall(mm);
    if (s == null) return;
    long fixed = 0;
    for (Component c : FIXED) fixed += need.bytes(c, s.tiers());
    StringBuilder m = new StringBuilder("not enough memory to " + job + ": it " + need.describe(s) + ". ");
    if (fixed > s.available()) {
      m.append("The ").append(fixedParts(need, s)).append(" alone need ").append(Footprint.size(fixed)).append(": ")
          .append(fixedAdvice);
    } else {
      m.append(Character.toUpperCase(tokenAdvice.charAt(0))).append(tokenAdvice.substring(1));
    }
    if (s.limit() == Footprint.Limit.BUDGET && need.shortfalls(mm).stream().noneMatch(x -> x.limit() == Footprint.Limit.MACHINE)) {
      Tier t = s.tiers().iterator().next();  // the machine has room: the budget is what stops it
      m.append(", or raise the ").append(t).append(" budget with ").append(flag(t));
      if (t == Tier.HOST) {
        m.append(" (by default ").append(MemoryManager.DEFAULT_HOST_PERCENT).append("% of the host memory available at start)");
      }
    }
    throw new InsufficientMemoryException(m.append('.').toString());
  }

  /**
   * Training ({@code train}, {@code bench --mode train}): {@code tc}'s batch, sequence and accumulation, with or without
   * recomputation, plus reading the weights from a Hugging Face directory ({@code loading}) and the host buffers of
   * checkpoints ({@code checkpoints}). The advice names --recompute (with what the activations would then need) when
   * {@code canRecompute} and it is off.
   */
  static void requireTraining(ModelConfig mc, Device device, TrainConfig tc, boolean recompute, boolean canRecompute,
      boolean loading, boolean checkpoints) {
    requireTraining(new OffloadPlanner.Job(mc, device, tc, recompute, loading, checkpoints), canRecompute, false);
  }

  /**
   * The same for a planner's job, with everything in memory; when {@code canOffload} and the planner finds a placement
   * that fits (state on DISK), the advice also names {@code --offload auto} and what host memory then needs.
   */
  static void requireTraining(OffloadPlanner.Job job, boolean canRecompute, boolean canOffload) {
    ModelConfig mc = job.model();
    Device device = job.device();
    TrainConfig tc = job.train();
    boolean recompute = job.recompute();
    DType dt = Transformer.defaultComputeDtype(device);
    Footprint need = job.inMemory();
    String offload = "";
    if (canOffload && need.worstShortfall(MemoryManager.global()) != null) {
      OffloadPlan p = OffloadPlanner.plan(job, MemoryManager.global()).plan();
      if (p != null && p.offloads()) {
        offload = ", or --offload auto (" + p.describeOnDisk()
            + " then go to DISK: " + Footprint.size(p.bytes(Tier.HOST)) + " of host memory and "
            + Footprint.size(p.bytes(Tier.DISK)) + " on DISK)";
      }
    }
    String advice = "use a smaller --batch or --seq (activations and workspace grow with batch x seq)";
    if (canRecompute && !recompute && mc.layers() > 1) {
      Footprint r = Footprint.training(mc, device, dt, tc.batch(), tc.seq(), tc.accum(), true);
      Set<Tier> all = EnumSet.allOf(Tier.class);
      advice += ", or --recompute (activations then need " + Footprint.size(r.bytes(Component.ACTIVATIONS, all))
          + " instead of " + Footprint.size(need.bytes(Component.ACTIVATIONS, all)) + ")";
    }
    require(need, "train this model", advice + offload, "use a smaller model" + offload);
  }

  /**
   * Training as one process of a parallel layout ({@code layout}, {@code world} processes, {@code job}'s micro-batches per
   * replica): the parallel planner's estimate for the busiest rank (its stage's weights, its shards of the gradients and
   * AdamW's state, the activations of the micro-batches in flight, buffers, and the receive buffers of the collectives),
   * plus reading the weights when {@code job} loads them. A multi-process checkpoint is written from the live state piece
   * by piece (or, under --tp, gathered tensor by tensor), so it adds nothing here. Refuses as {@link
   * #requireTraining} does when that does not fit this process's budget.
   */
  static void requireRank(OffloadPlanner.Job job, ParallelPlanner.Layout layout, int world) {
    Footprint need = rankFootprint(job, layout, world);
    String advice = "use a smaller --batch or --seq (activations and workspace grow with batch x seq)"
        + (layout.recompute() || job.model().layers() < 2 ? "" : ", or --recompute");
    String shard = layout.zero() < 2 && layout.dp() > 1 && layout.tp() == 1
        ? ", or a higher --zero (" + (layout.zero() == 0 ? "1 shards AdamW's state, " : "") + "2 also the gradients)" : "";
    require(need, "train this model as one of " + world + " processes (" + layout + ")", advice + shard,
        "use more processes or a smaller model" + shard);
  }

  /** What {@link #requireRank} checks: the busiest rank's parts, all in host memory (parallel runs are CPU runs). */
  static Footprint rankFootprint(OffloadPlanner.Job job, ParallelPlanner.Layout layout, int world) {
    TrainConfig tc = job.train();
    var pj = new ParallelPlanner.Job(job.model(), job.device(), world, tc.batch(), tc.seq(), tc.accum() * layout.dp(),
        Long.MAX_VALUE, new ParallelPlanner.Hardware(1, 1, 0));
    ParallelPlanner.Estimate e = ParallelPlanner.estimate(pj, layout);
    List<Footprint.Part> parts = new ArrayList<>();
    for (Map.Entry<String, Long> p : e.memoryParts().entrySet()) {
      Component c = switch (p.getKey()) {
        case "weights" -> Component.WEIGHTS;
        case "gradients" -> Component.GRADIENTS;
        case "AdamW state" -> Component.OPTIMIZER;
        case "activations" -> Component.ACTIVATIONS;
        default -> Component.BUFFERS;  // the model's buffers, the collectives' receive buffers
      };
      parts.add(new Footprint.Part(c, Tier.HOST, p.getValue()));
    }
    if (job.loading()) parts.add(new Footprint.Part(Component.LOADING, Tier.HOST, job.inMemory().bytes(Component.LOADING,
        EnumSet.of(Tier.HOST))));
    return Footprint.of(job.device(), parts);
  }

  /**
   * The refusal of a job no offload plan fits ({@code failure}, from {@link OffloadPlanner#plan}), with what still
   * helps: fewer tokens at once, --recompute when it is off, a smaller model, a larger budget.
   */
  static InsufficientMemoryException offloadRefusal(OffloadPlanner.Job job, String failure) {
    return new InsufficientMemoryException("not enough memory to train this model: " + failure + ". What still helps: a "
        + "smaller --batch or --seq" + (job.recompute() || job.model().layers() < 2 ? "" : ", --recompute")
        + ", a smaller model, or a larger budget (--mem-host).");
  }

  /** The refusal of a CUDA job for which even the optimizer on the host does not fit ({@code failure} says why). */
  static InsufficientMemoryException hostOffloadRefusal(String failure) {
    return new InsufficientMemoryException("not enough memory to train this model: " + failure + ". What still helps: a "
        + "smaller --batch or --seq, a smaller model, or larger budgets (--mem-device, --mem-host).");
  }

  /** "weights, gradients and AdamW state": the fixed components present in the shortfall's tiers. */
  private static String fixedParts(Footprint need, Shortfall s) {
    StringBuilder b = new StringBuilder();
    int n = 0, count = 0;
    for (Component c : FIXED) if (need.bytes(c, s.tiers()) > 0) count++;
    for (Component c : FIXED) {
      if (need.bytes(c, s.tiers()) == 0) continue;
      n++;
      if (n > 1) b.append(n == count ? " and " : ", ");
      b.append(c.label());
    }
    return b.toString();
  }

  /** The flag of a tier's budget. */
  static String flag(Tier t) {
    return switch (t) {
      case DEVICE -> "--mem-device";
      case HOST_PINNED -> "--mem-pinned";
      case HOST -> "--mem-host";
      case DISK -> "--mem-disk";
    };
  }
}
