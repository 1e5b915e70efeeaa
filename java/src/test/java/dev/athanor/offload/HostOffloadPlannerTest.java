package dev.athanor.offload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.nn.Footprint;
import dev.athanor.nn.Footprint.Component;
import dev.athanor.nn.ModelConfig;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The plans of the optimizer on the host for CUDA jobs ({@link HostOffloadPlanner}), made without a GPU (a cuda
 * {@link Device} value and budgets; the device's free memory is then unknown and only the budgets bound it): GPT-2 124M
 * with a DEVICE budget below its in-memory state; the moments going to DISK as the HOST budget shrinks; recomputation
 * when the activations are what does not fit; the refusals naming the short tier.
 */
class HostOffloadPlannerTest {
  static final MemoryManager MM = MemoryManager.global();
  static final ModelConfig GPT2_124M = ModelConfig.preset("gpt2");
  static final Device CUDA = Device.parse("cuda");
  static final long GIB = 1L << 30;
  private final Map<Tier, Long> budgets = new EnumMap<>(Tier.class);

  @BeforeEach
  void saveBudgets() {
    for (Tier t : Tier.values()) budgets.put(t, MM.budgetBytes(t));
    MM.setBudget(Tier.HOST_PINNED, MemoryManager.UNLIMITED);
  }

  @AfterEach
  void restoreBudgets() {
    budgets.forEach(MM::setBudget);
  }

  static OffloadPlanner.Job job(int batch, boolean recompute) {
    TrainConfig tc = new TrainConfig(10, batch, 1024, 1, 6e-4f, 6e-5f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 0);
    return new OffloadPlanner.Job(GPT2_124M, CUDA, tc, recompute, false, false);
  }

  /** Sets the DEVICE and HOST budgets ({@code host}: on top of what is live in HOST now, as the planner sees it). */
  static void budgets(long device, long host) {
    MM.setBudget(Tier.DEVICE, device);
    MM.setBudget(Tier.HOST, MM.liveBytes(Tier.HOST) + host);
  }

  @Test
  void gpt2WithADeviceBudgetBelowItsStateMovesTheOptimizerToPinnedHostMemory() {
    OffloadPlanner.Job j = job(4, false);
    long n = OffloadPlan.layoutElements(GPT2_124M);
    Footprint memory = j.inMemory();
    Footprint host = HostOffloadPlanner.footprint(j, Set.of());
    // masters and both moments (12 bytes a parameter) leave the device; with one micro-batch a step the gradient
    // streams into a pinned copy of it, and the weights go through two pinned slots
    long state = 3 * MemoryManager.reservedSize(Tier.DEVICE, 4 * n);
    assertEquals(memory.bytes(Tier.DEVICE) - state, host.bytes(Tier.DEVICE));
    long largest = OffloadPlan.largestUnit(GPT2_124M);
    long slots = 2 * MemoryManager.reservedSize(Tier.HOST_PINNED, 2 * largest);
    assertEquals(4 * MemoryManager.reservedSize(Tier.HOST_PINNED, 4 * n) + slots, host.bytes(Tier.HOST_PINNED));
    // with accumulation the gradients go through two slots of the largest unit instead
    TrainConfig t2 = new TrainConfig(10, 4, 1024, 2, 6e-4f, 6e-5f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 0);
    Footprint accum = HostOffloadPlanner.footprint(new OffloadPlanner.Job(GPT2_124M, CUDA, t2, false, false, false), Set.of());
    assertEquals(3 * MemoryManager.reservedSize(Tier.HOST_PINNED, 4 * n) + slots
        + 2 * MemoryManager.reservedSize(Tier.HOST_PINNED, 4 * largest), accum.bytes(Tier.HOST_PINNED));
    assertEquals(memory.bytes(Tier.HOST), host.bytes(Tier.HOST));
    assertEquals(0, host.bytes(Tier.DISK));
    assertEquals(memory.bytes(Component.WEIGHTS, Set.of(Tier.DEVICE)) - MemoryManager.reservedSize(Tier.DEVICE, 4 * n),
        host.bytes(Component.WEIGHTS, Set.of(Tier.DEVICE)), "the BF16 weights stay");

    // a DEVICE budget just above what stays on the device, below the in-memory job even recomputing: the optimizer
    // goes to the host
    long device = host.bytes(Tier.DEVICE) + (1 << 20);
    assertTrue(device < j.withRecompute(true).inMemory().bytes(Tier.DEVICE));
    budgets(device, 8 * GIB);
    assertNull(OffloadPlanner.plan(j, MM).plan(), "it does not fit on the device");
    HostOffloadPlanner.Plan p = HostOffloadPlanner.plan(j, MM).orThrow();
    assertEquals(Set.of(), p.diskMoments());
    assertFalse(p.job().recompute());
    assertEquals(HostOffload.PINNED, p.offload(null));
    assertEquals(n * 6, p.hostTrafficPerStep(), "F32 gradient down, BF16 weights up");
    assertEquals(0, p.diskTrafficPerStep());
    String text = String.join("\n", p.describe());
    assertTrue(text.contains("the optimizer on the host") && text.contains("pinned host memory") && text.contains("on cuda:0"), text);
    assertTrue(text.contains("DEVICE: " + Footprint.size(host.bytes(Tier.DEVICE))), text);
  }

  @Test
  void theMomentsGoToDiskAsHostMemoryShrinks() {
    OffloadPlanner.Job j = job(4, false);
    long device = HostOffloadPlanner.footprint(j, Set.of()).bytes(Tier.DEVICE);
    Set<Role> none = Set.of(), m = Set.of(Role.ADAM_M), both = Set.of(Role.ADAM_M, Role.ADAM_V);
    long[] host = new long[3];
    int i = 0;
    for (Set<Role> roles : new Set[] {none, m, both}) {
      Footprint f = HostOffloadPlanner.footprint(j, roles);
      assertEquals(device, f.bytes(Tier.DEVICE), "the device keeps the same with the moments anywhere");
      host[i++] = f.bytes(Set.of(Tier.HOST, Tier.HOST_PINNED));
    }
    assertTrue(host[0] > host[1] && host[1] > host[2], java.util.Arrays.toString(host));
    budgets(device, host[1]);  // pinned and ordinary host memory together, held to the HOST budget
    HostOffloadPlanner.Plan p = HostOffloadPlanner.plan(j, MM).orThrow();
    assertEquals(m, p.diskMoments());
    assertEquals(2L * 4 * OffloadPlan.layoutElements(GPT2_124M), p.diskTrafficPerStep());
    HostOffload off = p.offload(Path.of("/tmp/x"));
    assertTrue(off.moments().onDisk(Role.ADAM_M) && !off.moments().onDisk(Role.ADAM_V), off.toString());
    assertTrue(p.streamGradients());
    budgets(device, host[2]);
    assertEquals(both, HostOffloadPlanner.plan(j, MM).orThrow().diskMoments());
    // less: the gradients go through two slots instead of a pinned copy of them (slower, 4 bytes a parameter less)
    long slots = HostOffloadPlanner.footprint(j, both, false).bytes(Set.of(Tier.HOST, Tier.HOST_PINNED));
    assertTrue(slots < host[2], slots + " < " + host[2]);
    budgets(device, host[2] - 1);
    p = HostOffloadPlanner.plan(j, MM).orThrow();
    assertEquals(both, p.diskMoments());
    assertFalse(p.streamGradients());
    assertFalse(p.offload(null).streamGradients());
    assertTrue(String.join("\n", p.describe()).contains("through two slots"), p.describe().toString());
    assertTrue(String.join("\n", p.describe()).contains("overlapping the next forward"), p.describe().toString());
    budgets(device, slots - 1);
    HostOffloadPlanner.Result r = HostOffloadPlanner.plan(j, MM);
    assertNull(r.plan());
    assertTrue(r.failure().contains("host memory (HOST and HOST_PINNED, held to the HOST budget) is"), r.failure());
  }

  /**
   * With accumulation, the step's gradient sum on the device first (two slots on the host), then, under a DEVICE budget
   * that leaves no room for it, on the host: the device then holds exactly one micro-batch's F32 gradient (the sum's
   * bytes gone from DEVICE), the host a pinned F32 accumulator and two F32 slots of the largest unit beside the weight
   * slots; each micro-batch's gradient goes down; a budget below that refuses, naming the DEVICE tier.
   */
  @Test
  void withAccumulationTheSumGoesToTheHostWhenTheDeviceIsShort() {
    TrainConfig t3 = new TrainConfig(10, 4, 1024, 3, 6e-4f, 6e-5f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 0);
    OffloadPlanner.Job j = new OffloadPlanner.Job(GPT2_124M, CUDA, t3, true, false, false);  // recomputing already
    long n = OffloadPlan.layoutElements(GPT2_124M);
    long largest = OffloadPlan.largestUnit(GPT2_124M);
    long grad = MemoryManager.reservedSize(Tier.DEVICE, 4 * n);
    Footprint onDevice = HostOffloadPlanner.footprint(j, Set.of());
    Footprint onHost = HostOffloadPlanner.footprint(j, Set.of(), false, true);
    assertEquals(j.inMemory().bytes(Component.GRADIENTS, Set.of(Tier.DEVICE)), 2 * grad, "the micro-batch's and the sum");
    assertEquals(2 * grad, onDevice.bytes(Component.GRADIENTS, Set.of(Tier.DEVICE)));
    assertEquals(grad, onHost.bytes(Component.GRADIENTS, Set.of(Tier.DEVICE)), "one micro-batch's gradient on the device");
    assertEquals(onDevice.bytes(Tier.DEVICE) - grad, onHost.bytes(Tier.DEVICE));
    long slots = 2 * MemoryManager.reservedSize(Tier.HOST_PINNED, 4 * largest);
    assertEquals(slots, onDevice.bytes(Component.GRADIENTS, Set.of(Tier.HOST_PINNED)));
    assertEquals(MemoryManager.reservedSize(Tier.HOST_PINNED, 4 * n) + slots,
        onHost.bytes(Component.GRADIENTS, Set.of(Tier.HOST_PINNED)), "the accumulator and two slots");
    assertEquals(onDevice.bytes(Tier.HOST_PINNED) + MemoryManager.reservedSize(Tier.HOST_PINNED, 4 * n), onHost.bytes(Tier.HOST_PINNED));

    budgets(onDevice.bytes(Tier.DEVICE), 8 * GIB);
    HostOffloadPlanner.Plan p = HostOffloadPlanner.plan(j, MM).orThrow();
    assertFalse(p.sumOnHost(), "the sum stays on the device when it fits");
    assertFalse(p.offload(null).sumOnHost());
    assertEquals(n * (4 + 2), p.hostTrafficPerStep());
    budgets(onDevice.bytes(Tier.DEVICE) - 1, 8 * GIB);
    p = HostOffloadPlanner.plan(j, MM).orThrow();
    assertTrue(p.sumOnHost());
    assertEquals(Set.of(), p.diskMoments());
    assertTrue(p.offload(null).sumOnHost());
    assertEquals(onHost, p.footprint());
    assertEquals(n * (3 * 4 + 2), p.hostTrafficPerStep(), "each micro-batch's F32 gradient down, BF16 weights up");
    assertTrue(String.join("\n", p.describe()).contains("added into the step's sum in pinned host memory"), p.describe().toString());
    budgets(onHost.bytes(Tier.DEVICE) - 1, 8 * GIB);
    HostOffloadPlanner.Result r = HostOffloadPlanner.plan(j, MM);
    assertNull(r.plan());
    assertTrue(r.failure().contains("the DEVICE tier is") && r.failure().contains("micro-batch's gradient"), r.failure());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> HostOffloadPlanner.footprint(job(4, false), Set.of(), false, true));
    assertTrue(e.getMessage().contains("only with accumulation"), e.getMessage());
  }

  /**
   * One of 2 data-parallel ranks: a gradient whole in pinned host memory (streamed, or summed) is all-reduced there, the
   * MPI communicator's scratch (the gradient's F32 elements and one a rank) counted in HOST; through the slots it is
   * reduced on the device, nothing more on the host.
   */
  @Test
  void aDataParallelRankCountsTheHostReductionsScratch() {
    long n = OffloadPlan.layoutElements(GPT2_124M);
    long scratch = MemoryManager.reservedSize(Tier.HOST, (n + 2) * 4);
    TrainConfig t2 = new TrainConfig(10, 4, 1024, 2, 6e-4f, 6e-5f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f, false, 0);
    OffloadPlanner.Job accum = new OffloadPlanner.Job(GPT2_124M, CUDA, t2, false, false, false);
    for (Object[] c : new Object[][] {{job(4, false), true, false, scratch}, {job(4, false), false, false, 0L},
        {accum, false, true, scratch}, {accum, false, false, 0L}}) {
      OffloadPlanner.Job j = (OffloadPlanner.Job) c[0];
      boolean stream = (Boolean) c[1], sum = (Boolean) c[2];
      Footprint one = HostOffloadPlanner.footprint(j, Set.of(), stream, sum, 1), two = HostOffloadPlanner.footprint(j, Set.of(), stream, sum, 2);
      assertEquals((long) c[3], two.bytes(Tier.HOST) - one.bytes(Tier.HOST), "stream " + stream + ", sum " + sum);
      assertEquals(one.bytes(Tier.DEVICE), two.bytes(Tier.DEVICE));
      assertEquals(one.bytes(Tier.HOST_PINNED), two.bytes(Tier.HOST_PINNED));
    }
  }

  @Test
  void activationsThatDoNotFitTheDeviceAreRecomputed() {
    OffloadPlanner.Job j = job(8, false);
    long kept = HostOffloadPlanner.footprint(j, Set.of()).bytes(Tier.DEVICE);
    long recomputed = HostOffloadPlanner.footprint(j.withRecompute(true), Set.of()).bytes(Tier.DEVICE);
    assertTrue(recomputed < kept, recomputed + " < " + kept);
    budgets(recomputed, 8 * GIB);
    HostOffloadPlanner.Plan p = HostOffloadPlanner.plan(j, MM).orThrow();
    assertTrue(p.job().recompute());
    assertEquals(Set.of(), p.diskMoments());
    assertTrue(String.join("\n", p.describe()).contains("recomputed in the backward"), p.describe().toString());
    budgets(recomputed - 1, 8 * GIB);
    HostOffloadPlanner.Result r = HostOffloadPlanner.plan(j, MM);
    assertNull(r.plan());
    assertTrue(r.failure().contains("the DEVICE tier is") && r.failure().contains("what stays on cuda:0 is the BF16 weights"),
        r.failure());
  }

  @Test
  void refusesWhatItDoesNotPlan() {
    OffloadPlanner.Job cpu = new OffloadPlanner.Job(GPT2_124M, Device.CPU, job(4, false).train(), false, false, false);
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HostOffloadPlanner.footprint(cpu, Set.of()));
    assertTrue(e.getMessage().contains("planned for a CUDA job"), e.getMessage());
    e = assertThrows(IllegalArgumentException.class, () -> HostOffloadPlanner.place(job(4, false), Set.of(Role.GRAD)));
    assertTrue(e.getMessage().contains("only AdamW's moments can be on DISK, not grad"), e.getMessage());
    OffloadPlanner.Job acts = job(4, false).withActivationsOnDisk(true);
    e = assertThrows(IllegalArgumentException.class, () -> HostOffloadPlanner.footprint(acts, Set.of()));
    assertTrue(e.getMessage().contains("activations on DISK need the CPU backend"), e.getMessage());
  }
}
