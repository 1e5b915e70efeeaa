package dev.athanor.train;

import dev.athanor.offload.ChunkStreamer;
import dev.athanor.offload.OffloadConfig;
import dev.athanor.offload.ResidentWindows;
import dev.athanor.offload.UnitFiles;
import dev.athanor.offload.UnitUpdate;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * AdamW over a {@link ParameterStore}: FP32 moments in the store's {@link Role#ADAM_M} and {@link Role#ADAM_V}
 * buffers, decoupled weight decay only on tensors of rank >= 2 (never biases or norm weights), and the
 * compute-dtype weights refreshed by the same fused kernel. Updates work on a {@link Range} of the flat layout (a
 * shard, an offload unit, or everything): the update is elementwise, so updating a range in pieces gives the
 * same bits as updating it at once.
 *
 * <p><b>Moments on DISK.</b> With an {@link OffloadConfig} that places ADAM_M and/or ADAM_V on DISK (CPU backend
 * only), those moments live in one file per unit and role ({@link UnitFiles}) instead of the store, and
 * {@link #update} streams them chunk by chunk through host staging slots ({@link ChunkStreamer}): each chunk runs
 * the same kernel on the same elements as the in-memory update, so the results are bit-identical. The masters
 * (the compute weights on the CPU) and the gradients stay in the store. Close the optimizer to delete the files.
 *
 * <p><b>A shard's moments on DISK</b> ({@link #AdamW(ParameterStore, Range, OffloadConfig)}, ZeRO 1 and 2): only the
 * shard's elements of each moment on DISK are kept, in files of that range ({@link UnitFiles#UnitFiles(ParameterStore,
 * java.util.Set, java.nio.file.Path, Range)}), and the shard's updates stream them in the same chunks, so the bits are
 * those of the sharded optimizer in memory. The units {@link OffloadConfig#residentUnits()} names for a moment keep
 * their part of the shard in HOST memory instead ({@link UnitFiles#isResident}): updated in place, never read from or
 * written to DISK.
 *
 * <p><b>A ZeRO 3 shard's masters and gradient on DISK too</b> ({@link #AdamW(ParameterStore, Range, Tensor, UnitFiles,
 * OffloadConfig)}): the caller's files of the shard ({@link Role#MASTER} and/or {@link Role#GRAD}) are streamed through
 * the same staging slots as the moments, the masters read and written back, the gradient only read, with the same
 * kernel on the same elements.
 */
public final class AdamW implements AutoCloseable {
  private final ParameterStore store;
  private final UnitFiles files;          // the moments on DISK in files of this optimizer's own, or null
  private final Map<Role, UnitFiles> moments;  // where each moment on DISK is (its own files or the caller's)
  private final boolean ownsFiles;        // made (and deleted) by this optimizer
  private final ChunkStreamer streamer;   // streams them, or null
  private final Range shard;              // ZeRO 1: the only range this optimizer updates and keeps moments for, or null
  private final Tensor shardM, shardV;    // its moments in memory (1-D, element 0 at shard.start()), or null (DISK, unsharded)
  private final Tensor shardMasters;      // ZeRO 3: the shard's masters, the only ones this replica keeps (not owned), or null
  private final List<ResidentWindows> resident = new ArrayList<>();  // the moments' units kept in memory though on DISK
  private final UnitFiles shardState;     // ZeRO 3: the caller's files of the shard's masters and/or gradient on DISK, or null
  private long step;

  /** AdamW over {@code store}, allocating its moments (zeros) when the store has none. */
  public AdamW(ParameterStore store) {
    this(store, OffloadConfig.NONE);
  }

  /**
   * AdamW over {@code store} with the moments {@code offload} puts on DISK in new files there (zeros), the others in
   * the store. Throws {@link dev.athanor.memory.AllocationFailedException} naming the tier, the directory and the
   * bytes when the offload directory cannot hold them.
   */
  public AdamW(ParameterStore store, OffloadConfig offload) {
    this(store, offload, null, null, null);
  }

  /**
   * ZeRO stage 1: AdamW over {@code store} that keeps moments (zeros, in tensors of its own rather than the store's
   * ADAM_M and ADAM_V) for {@code shard} only and whose {@link #update}s touch only the parameters there, with the same
   * kernel on the same elements as an unsharded optimizer (bit-identical results in that range). The other replicas
   * update the rest; gathering the updated masters is the caller's business. Needs the masters to be the compute
   * weights (F32 on the CPU) and no offload; the moments cannot be listed ({@link #firstMoments()} throws).
   */
  public AdamW(ParameterStore store, Range shard) {
    this(store, OffloadConfig.NONE, Objects.requireNonNull(shard, "shard"), null, null);
  }

  /**
   * ZeRO stage 3: a sharded optimizer as {@link #AdamW(ParameterStore, Range)} whose shard's masters are {@code
   * masters} (F32, 1-D, {@code shard.length()} elements, element 0 at {@code shard.start()}; owned by the caller, who
   * keeps it open while this optimizer lives) rather than the store's, which holds the replica's masters only while a
   * unit is gathered. {@link #updateShard} updates them in place.
   */
  public AdamW(ParameterStore store, Range shard, Tensor masters) {
    this(store, OffloadConfig.NONE, Objects.requireNonNull(shard, "shard"), Objects.requireNonNull(masters, "masters"), null);
  }

  /**
   * ZeRO stage 3 with offload: {@link #AdamW(ParameterStore, Range, Tensor)} whose moments that {@code offload} puts on
   * DISK are kept for the shard only and streamed chunk by chunk, as {@link #AdamW(ParameterStore, Range,
   * OffloadConfig)} keeps them; the shard's masters stay in {@code masters}. Bit-identical to the same optimizer in memory.
   */
  public AdamW(ParameterStore store, Range shard, Tensor masters, OffloadConfig offload) {
    this(store, Objects.requireNonNull(offload, "offload"), Objects.requireNonNull(shard, "shard"),
        Objects.requireNonNull(masters, "masters"), null);
  }

  /**
   * ZeRO 3 with the shard's masters and/or gradient on DISK: as {@link #AdamW(ParameterStore, Range, Tensor,
   * OffloadConfig)}, where {@code shardFiles} (files of {@code shard}'s range holding {@link Role#MASTER} and/or {@link
   * Role#GRAD}, owned by the caller, who closes them after this optimizer; null: none) are streamed chunk by chunk with
   * the moments {@code offload} puts on DISK: the masters there read and written back, the gradient only read ({@link
   * #updateShard} then takes null for it). {@code masters} is null exactly when the files hold the masters. {@code
   * offload}'s MASTER and GRAD (the files') are not the optimizer's to place. Bit-identical to the shard in memory.
   */
  public AdamW(ParameterStore store, Range shard, Tensor masters, UnitFiles shardFiles, OffloadConfig offload) {
    this(store, Objects.requireNonNull(offload, "offload"), Objects.requireNonNull(shard, "shard"), masters, shardFiles);
  }

  /**
   * ZeRO stages 1 and 2 with offload: a sharded optimizer as {@link #AdamW(ParameterStore, Range)} whose moments that
   * {@code offload} puts on DISK ({@link Role#ADAM_M}, {@link Role#ADAM_V}; no other role) are kept for the shard only,
   * in new files under its directory (zeros), and streamed by {@link #update} and {@link #updateShard} in chunks of at
   * most {@code offload.chunkBytes()} per role; the others are in memory. Bit-identical to the same optimizer in memory.
   */
  public AdamW(ParameterStore store, Range shard, OffloadConfig offload) {
    this(store, Objects.requireNonNull(offload, "offload"), Objects.requireNonNull(shard, "shard"), null, null);
  }

  private AdamW(ParameterStore store, OffloadConfig offload, Range shard, Tensor masters, UnitFiles shardState) {
    this.store = Objects.requireNonNull(store, "store");
    this.shard = shard;
    if (shardState != null && (!shardState.range().equals(shard) || shardState.store() != store)) {
      throw new IllegalArgumentException("the shard's files hold " + shardState.range() + " of " + (shardState.store() == store
          ? "this store" : "another store") + ", not the shard " + shard);
    }
    boolean mastersOnDisk = shardState != null && shardState.holds(Role.MASTER);
    if (masters == null && !mastersOnDisk && shardState != null) {
      throw new IllegalArgumentException("ZeRO 3 needs the shard's masters in memory or in its files; its files hold only "
          + shardState.roles());
    }
    if (masters != null && mastersOnDisk) {
      throw new IllegalArgumentException("the shard's masters are both in memory and on DISK");
    }
    this.shardState = shardState;
    if (masters != null && (masters.dtype() != DType.F32 || masters.numel() != shard.length() || !masters.isContiguous())) {
      throw new IllegalArgumentException("the masters of shard " + shard + " must be " + shard.length() + " contiguous F32 "
          + "elements, got " + masters);
    }
    this.shardMasters = masters;
    if (shard != null) {
      if (!store.all().contains(shard)) throw new IllegalArgumentException("shard " + shard + " is outside the store's " + store.all());
      // the optimizer on the host (ZeRO 1): the shard's masters held here, low-precision compute weights apart
      boolean hostShard = masters != null && store.computeDtype() != DType.F32;
      if (!store.weightsAreMasters() && !hostShard) {
        throw new IllegalArgumentException("a sharded optimizer (ZeRO 1) needs the masters to be the compute weights (F32 on the "
            + "CPU), or its shard's masters apart from low-precision weights; this store computes in "
            + store.computeDtype() + " on " + store.placement(Role.MASTER));
      }
      Objects.requireNonNull(offload, "offload");
      java.util.Set<Role> momentsOnDisk = java.util.EnumSet.noneOf(Role.class);
      for (Role r : offload.diskRoles()) {
        if (shardState != null && shardState.holds(r)) continue;  // the caller's files (ZeRO 3)
        momentsOnDisk.add(r);
        if (r != Role.ADAM_M && r != Role.ADAM_V) {
          throw new IllegalArgumentException("a sharded optimizer (ZeRO 1 and 2) keeps only AdamW's moments on DISK, not " + r);
        }
      }
      UnitFiles f = null;
      ChunkStreamer st = null;
      Tensor m = null, v = null;
      try {  // the moments' resident units: their parts of the shard in HOST windows of the files
        if (!momentsOnDisk.isEmpty()) {
          f = new UnitFiles(store, momentsOnDisk, offload.resolvedDirectory(), shard, offload.residentUnits());
        }
        List<UnitFiles> streamed = new ArrayList<>();
        if (f != null) streamed.add(f);
        if (shardState != null) streamed.add(shardState);
        if (!streamed.isEmpty()) {
          st = new ChunkStreamer(ChunkStreamer.byRole(streamed), offload.chunkBytes(), java.util.Set.of(Role.GRAD));
        }
        dev.athanor.runtime.Device d = store.placement(Role.MASTER).device();
        // on the host for a model on a device: where the store places the moments (pinned host memory)
        if (!offload.onDisk(Role.ADAM_M)) m = hostShard ? zerosAt(Role.ADAM_M, shard.length()) : Tensor.zeros(DType.F32, d, shard.length()).detach();
        if (!offload.onDisk(Role.ADAM_V)) v = hostShard ? zerosAt(Role.ADAM_V, shard.length()) : Tensor.zeros(DType.F32, d, shard.length()).detach();
      } catch (RuntimeException e) {
        if (m != null) m.close();
        if (st != null) st.close();
        if (f != null) f.close();
        throw e;
      }
      this.shardM = m;
      this.shardV = v;
      this.files = f;
      this.streamer = st;
      this.moments = new java.util.EnumMap<>(Role.class);
      if (f != null) for (Role r : f.roles()) moments.put(r, f);
      this.ownsFiles = true;
      return;
    }
    this.shardM = null;
    this.shardV = null;
    if (shardState != null) throw new IllegalArgumentException("files of a shard's masters or gradient need a shard");
    Objects.requireNonNull(offload, "offload");
    if (offload.enabled()) {
      if (!store.placement(Role.MASTER).device().isCpu()) {
        throw new IllegalArgumentException("AdamW moments on DISK need the masters in host memory (the CPU backend); "
            + "this store's masters are on " + store.placement(Role.MASTER));
      }
      for (Role r : offload.diskRoles()) {
        if (store.has(r)) throw new IllegalArgumentException(r + " is already allocated in the store; cannot also keep it on DISK");
      }
      UnitFiles f = new UnitFiles(store, offload.diskRoles(), offload.resolvedDirectory());
      ChunkStreamer st = null;
      try {
        st = new ChunkStreamer(f, offload.chunkBytes());
        pinResident(f, offload.residentUnits());
      } catch (RuntimeException e) {
        closeResident();
        if (st != null) st.close();
        f.close();
        throw e;
      }
      this.streamer = st;
      this.files = f;
    } else {
      this.files = null;
      this.streamer = null;
    }
    this.moments = new java.util.EnumMap<>(Role.class);
    if (files != null) for (Role r : files.roles()) moments.put(r, files);
    this.ownsFiles = true;
    for (Role r : new Role[] {Role.ADAM_M, Role.ADAM_V}) if (!onDisk(r)) store.allocate(r);
  }

  /**
   * AdamW over {@code store} streaming every role of {@code files} (each set owned by the caller, who closes it after
   * this optimizer) in chunks of at most {@code chunkBytes} per role: the masters and moments there are read and
   * written back, the gradients ({@link Role#GRAD}) only read. The moments in none of them are allocated in the store.
   */
  public AdamW(ParameterStore store, List<UnitFiles> files, long chunkBytes) {
    this(store, files, chunkBytes, java.util.Map.of());
  }

  /**
   * As {@link #AdamW(ParameterStore, List, long)}, with the units {@code residentUnits} names for ADAM_M and ADAM_V (other
   * roles' entries are the pagers' business and ignored here) kept in memory: their moments live in HOST windows mapped
   * in the store ({@link ResidentWindows}), updated in place and never read from or written to DISK.
   */
  public AdamW(ParameterStore store, List<UnitFiles> files, long chunkBytes, Map<Role, java.util.Set<String>> residentUnits) {
    this.store = Objects.requireNonNull(store, "store");
    Objects.requireNonNull(residentUnits, "residentUnits");
    Map<Role, UnitFiles> byRole = ChunkStreamer.byRole(files);
    for (Map.Entry<Role, UnitFiles> e : byRole.entrySet()) {
      if (e.getValue().store() != store) throw new IllegalArgumentException("the offload files belong to another parameter store");
      if (e.getKey() == Role.WEIGHT || e.getKey() == Role.GRAD_ACC) {
        throw new IllegalArgumentException(e.getKey() + " cannot be streamed by the optimizer");
      }
    }
    this.moments = new java.util.EnumMap<>(Role.class);
    for (Role r : new Role[] {Role.ADAM_M, Role.ADAM_V}) if (byRole.containsKey(r)) moments.put(r, byRole.get(r));
    this.files = null;
    this.ownsFiles = false;
    this.shard = null;
    this.shardM = null;
    this.shardV = null;
    this.shardMasters = null;
    this.shardState = null;
    ChunkStreamer st = new ChunkStreamer(byRole, chunkBytes, java.util.Set.of(Role.GRAD));
    try {
      Map<Role, java.util.Set<String>> mine = new java.util.EnumMap<>(Role.class);
      for (Role r : moments.keySet()) if (residentUnits.containsKey(r)) mine.put(r, residentUnits.get(r));
      for (Map.Entry<Role, java.util.Set<String>> e : residentUnits.entrySet()) {
        if ((e.getKey() == Role.ADAM_M || e.getKey() == Role.ADAM_V) && !e.getValue().isEmpty() && !onDisk(e.getKey())) {
          throw new IllegalArgumentException("resident units of " + e.getKey() + " need it on DISK (in one of the offload files)");
        }
      }
      for (Map.Entry<Role, java.util.Set<String>> e : mine.entrySet()) {
        resident.add(ResidentWindows.pin(moments.get(e.getKey()), e.getKey(), e.getValue()));
      }
    } catch (RuntimeException e) {
      closeResident();
      st.close();
      throw e;
    }
    this.streamer = st;
    for (Role r : new Role[] {Role.ADAM_M, Role.ADAM_V}) if (!onDisk(r)) store.allocate(r);
  }

  /** Keeps the units {@code units} names of each moment in {@code f} in memory ({@link ResidentWindows}). */
  private void pinResident(UnitFiles f, Map<Role, java.util.Set<String>> units) {
    for (Role r : new Role[] {Role.ADAM_M, Role.ADAM_V}) {
      java.util.Set<String> u = units.getOrDefault(r, java.util.Set.of());
      if (!u.isEmpty()) resident.add(ResidentWindows.pin(f, r, u));
    }
  }

  private void closeResident() {
    RuntimeException failure = null;
    for (ResidentWindows w : resident) {
      try {
        w.close();
      } catch (RuntimeException e) {
        if (failure == null) failure = e;
      }
    }
    resident.clear();
    if (failure != null) throw failure;
  }

  /** Host bytes of the moments' resident units (0: none). */
  public long residentBytes() {
    long b = files != null && shard != null ? files.residentBytes() : 0;
    for (ResidentWindows w : resident) b += w.bytes();
    return b;
  }

  /** Whether {@code role} (ADAM_M or ADAM_V) lives in offload files on DISK rather than in the store. */
  public boolean onDisk(Role role) {
    return moments.containsKey(role);
  }

  /** The offload files this optimizer made for its moments on DISK, or null (none, or in files of the caller's). */
  public UnitFiles offloadFiles() {
    return files;
  }

  /** The host bytes of the staging slots that stream the moments on DISK (0 when none are, or before the first update). */
  public long stagingBytes() {
    return streamer == null ? 0 : streamer.stagingBytes();
  }

  /** The range this optimizer updates and keeps moments for (ZeRO 1), or null when it covers the whole store. */
  public Range shard() {
    return shard;
  }

  /** Steps taken so far (the next update uses step() + 1 for bias correction). */
  public long step() {
    return step;
  }

  /** The first moments, in parameter order (views owned by the store, or DISK views of the offload files: do not close). */
  public List<Tensor> firstMoments() {
    return views(Role.ADAM_M);
  }

  /** The second moments, in parameter order (views owned by the store, or DISK views of the offload files: do not close). */
  public List<Tensor> secondMoments() {
    return views(Role.ADAM_V);
  }

  private List<Tensor> views(Role role) {
    if (shard != null) {
      throw new IllegalStateException("this optimizer is sharded (ZeRO 1): it holds the moments of " + shard + " only");
    }
    if (onDisk(role) && !store.isPaged(role)) return moments.get(role).views(role);
    List<Tensor> l = new ArrayList<>(store.size());
    for (int i = 0; i < store.size(); i++) l.add(store.view(role, i));
    return l;
  }

  /**
   * ZeRO 1: a view of this optimizer's moments ({@code role} ADAM_M or ADAM_V) of the flat elements {@code range},
   * which must lie in its {@link #shard()} (1-D, F32; close it, the moments stay; a DISK view when the moment is on
   * DISK, and then the range must lie in one unit, as one parameter's part does). Throws when the optimizer is not
   * sharded or the range is not in its shard.
   */
  public Tensor shardMoments(Role role, Range range) {
    if (shard == null) throw new IllegalStateException("this optimizer is not sharded: list its moments with firstMoments()");
    if (role != Role.ADAM_M && role != Role.ADAM_V) throw new IllegalArgumentException("not a moment: " + role);
    if (onDisk(role)) {  // a DISK view of the shard's file (the range lies in one parameter, so in one unit)
      if (!shard.contains(range)) {
        throw new IllegalArgumentException("range " + range + " is not in this optimizer's shard " + shard);
      }
      return files.slice(role, range);
    }
    return shardPart(role == Role.ADAM_M ? shardM : shardV, range);
  }

  /**
   * ZeRO 3: a view of this optimizer's masters of the flat elements {@code range}, which must lie in its {@link
   * #shard()} (1-D, F32; close it, the masters stay). Throws when the optimizer does not keep the shard's masters.
   */
  public Tensor shardMasters(Range range) {
    if (!holdsMasters()) throw new IllegalStateException("this optimizer keeps no masters of its own (not ZeRO 3)");
    if (shardMasters == null) {  // on DISK: a DISK view of the shard's file (the range lies in one parameter, so one unit)
      if (!shard.contains(range)) throw new IllegalArgumentException("range " + range + " is not in this optimizer's shard " + shard);
      return shardState.slice(Role.MASTER, range);
    }
    return shardPart(shardMasters, range);
  }

  /** Whether this optimizer keeps its shard's masters itself (ZeRO 3), in memory or on DISK. */
  public boolean holdsMasters() {
    return shardMasters != null || shardState != null && shardState.holds(Role.MASTER);
  }

  private Tensor shardPart(Tensor t, Range range) {
    if (!shard.contains(range)) throw new IllegalArgumentException("range " + range + " is not in this optimizer's shard " + shard);
    return t.slice(0, range.start() - shard.start(), range.end() - shard.start());
  }

  /**
   * ZeRO 1: copies the part of {@code m} and {@code v} that this optimizer's shard holds into its moments (restoring
   * from full-size moments, e.g. a checkpoint's). {@code m} and {@code v} are the moments of the flat elements {@code
   * range} (contiguous F32, {@code range.length()} elements in any shape, e.g. one parameter's); the elements outside the
   * shard are ignored.
   */
  public void setShardMoments(Range range, Tensor m, Tensor v) {
    copyShardPart(range, m, Role.ADAM_M, true);
    copyShardPart(range, v, Role.ADAM_V, true);
  }

  /**
   * ZeRO 1: the reverse of {@link #setShardMoments}: copies this optimizer's moments of the part of {@code range} in its
   * shard into {@code m} and {@code v} (the moments of {@code range}); their other elements are left as they are.
   */
  public void getShardMoments(Range range, Tensor m, Tensor v) {
    copyShardPart(range, m, Role.ADAM_M, false);
    copyShardPart(range, v, Role.ADAM_V, false);
  }

  /**
   * ZeRO 3: copies the part of {@code masters} (the masters of the flat elements {@code range}, e.g. one parameter's
   * from a checkpoint) that this optimizer's shard holds into its masters; the elements outside the shard are ignored.
   */
  public void setShardMasters(Range range, Tensor masters) {
    copyShardPart(range, masters, Role.MASTER, true);
  }

  private void copyShardPart(Range range, Tensor full, Role role, boolean intoShard) {
    if (full.numel() != range.length() || full.dtype() != DType.F32) {
      throw new IllegalArgumentException("the " + role + " of " + range + " needs " + range.length() + " F32 elements, got "
          + full.numel() + " " + full.dtype());
    }
    Range part = range.intersect(shard == null ? range : shard);
    if (part.isEmpty()) return;
    try (Tensor flat = full.view(full.numel());
        Tensor outside = flat.slice(0, part.start() - range.start(), part.end() - range.start());
        Tensor mine = role == Role.MASTER ? shardMasters(part) : shardMoments(role, part)) {
      if (intoShard) {
        mine.copyFrom(outside);
      } else {
        outside.copyFrom(mine);
      }
    }
  }

  /** {@code n} F32 zeros where the store places {@code role}. */
  private Tensor zerosAt(Role role, long n) {
    dev.athanor.params.Placement p = store.placement(role);
    return Tensor.zeros(DType.F32, p.device(), p.tier(), n).detach();
  }

  /** Sets the step count (when restoring a saved optimizer state). */
  public void setStep(long s) {
    if (s < 0) throw new IllegalArgumentException("step must be >= 0, got " + s);
    step = s;
  }

  /** Counts one optimizer step; {@link #update} calls of that step then use it for bias correction. */
  public void beginStep() {
    step++;
  }

  /**
   * Updates the parameters in {@code range} from the gradients in {@code gradRole} times {@code gradScale} (e.g.
   * the clipping factor), with the step count of the last {@link #beginStep()}.
   */
  public void update(Range range, Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay,
      float gradScale) {
    update(range, gradRole, lr, beta1, beta2, eps, weightDecay, gradScale, null);
  }

  /**
   * {@link #update(Range, Role, float, float, float, float, float, float)} with the gradient factor read by the kernel
   * from {@code gradScale} (F32, one element where the parameters are, e.g. {@link Ops#clipScale}'s factor), so the
   * host need not wait for it; a factor that is not finite leaves the parameters and the moments as they were. Not for
   * a sharded optimizer (ZeRO). The same kernel with the same factor: the same bits as the float overload.
   */
  public void update(Range range, Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay,
      Tensor gradScale) {
    Objects.requireNonNull(gradScale, "gradScale");
    if (shard != null) throw new IllegalStateException("a sharded optimizer takes its gradient factor from the host");
    update(range, gradRole, lr, beta1, beta2, eps, weightDecay, 1f, gradScale);
  }

  private void update(Range range, Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay,
      float gradScale, Tensor scaleAt) {
    if (step == 0) throw new IllegalStateException("update() before beginStep()");
    boolean lowp = !store.weightsAreMasters() && store.computeDtype() != DType.F32;
    long t = step;
    if (shard != null) {
      Range r = range.intersect(shard);
      if (!r.isEmpty()) updateShardRange(r, gradRole, null, lowp, lr, beta1, beta2, eps, weightDecay, gradScale);
    } else if (streamer == null) {
      updateChunk(range, gradRole, Map.of(), 0, lowp, t, lr, beta1, beta2, eps, weightDecay, gradScale, scaleAt);
    } else {
      streamer.run(range, (chunk, staged) -> updateChunk(chunk, gradRole, staged, chunk.start(), lowp, t, lr, beta1,
          beta2, eps, weightDecay, gradScale, scaleAt));
    }
    if (!lowp) store.syncWeights(range);  // F32 weights kept apart from the masters (nothing when they are one buffer)
  }

  /**
   * ZeRO 2: updates this sharded optimizer's {@link #shard()} from {@code shardGrad} (F32, element 0 at {@code
   * shard().start()}, {@code shard().length()} elements: the step's gradient of the shard only; null when it is in the
   * shard's files on DISK, ZeRO 3) times {@code gradScale}, with the same kernel on the same elements as {@link #update}.
   */
  public void updateShard(Tensor shardGrad, float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    if (shard == null) throw new IllegalStateException("updateShard needs a sharded optimizer");
    if (step == 0) throw new IllegalStateException("update() before beginStep()");
    boolean gradOnDisk = shardState != null && shardState.holds(Role.GRAD);
    if (gradOnDisk != (shardGrad == null)) {
      throw new IllegalArgumentException(gradOnDisk ? "the shard's gradient is on DISK: pass null, not " + shardGrad
          : "the shard's gradient is null, but it is not on DISK");
    }
    if (shardGrad != null && (shardGrad.dtype() != DType.F32 || shardGrad.numel() != shard.length())) {
      throw new IllegalArgumentException("the shard's gradient must be " + shard.length() + " F32 elements, got " + shardGrad);
    }
    if (shard.isEmpty()) return;
    if (shardGrad == null) {  // streamed from the shard's files with the other roles on DISK
      updateShardRange(shard, Role.GRAD, null, false, lr, beta1, beta2, eps, weightDecay, gradScale);
      return;
    }
    try (Tensor g = shardGrad.view(shard.length())) {
      updateShardRange(shard, Role.GRAD, g, false, lr, beta1, beta2, eps, weightDecay, gradScale);
    }
  }

  /**
   * The kernel over {@code range} (inside the shard) with this shard's tensors: its moments (in memory, or streamed
   * from DISK chunk by chunk), {@code shardGrad} (the shard's gradient, element 0 at the shard's start) when not null
   * (else {@code gradRole} from the store), and under ZeRO 3 its masters.
   */
  private void updateShardRange(Range range, Role gradRole, Tensor shardGrad, boolean lowp, float lr, float beta1, float beta2,
      float eps, float weightDecay, float gradScale) {
    Map<Role, Tensor> held = new java.util.EnumMap<>(Role.class);  // each 1-D, element 0 at shard.start()
    if (shardM != null) held.put(Role.ADAM_M, shardM);
    if (shardV != null) held.put(Role.ADAM_V, shardV);
    if (shardGrad != null) held.put(Role.GRAD, shardGrad);
    if (shardMasters != null) held.put(Role.MASTER, shardMasters);  // ZeRO 3: the store holds no masters now
    updateHeld(range, held, shard.start(), gradRole, lowp, lr, beta1, beta2, eps, weightDecay, gradScale);
  }

  /**
   * The kernel over {@code range} with the roles in {@code held} (each 1-D, element 0 at flat element {@code heldStart})
   * taken from there, the roles on DISK streamed chunk by chunk, and the rest from the store.
   */
  private void updateHeld(Range range, Map<Role, Tensor> held, long heldStart, Role gradRole, boolean lowp, float lr,
      float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    if (streamer == null) {
      updateChunk(range, gradRole, held, heldStart, lowp, lr, beta1, beta2, eps, weightDecay, gradScale);
      return;
    }
    streamer.run(range, (chunk, staged) -> {  // the DISK roles staged; the rest cut to the chunk
      Map<Role, Tensor> all = new java.util.EnumMap<>(staged);
      try {
        for (Map.Entry<Role, Tensor> e : held.entrySet()) {
          all.put(e.getKey(), e.getValue().slice(0, chunk.start() - heldStart, chunk.end() - heldStart));
        }
        updateChunk(chunk, gradRole, all, chunk.start(), lowp, lr, beta1, beta2, eps, weightDecay, gradScale);
      } finally {
        for (Role r : held.keySet()) {
          Tensor t = all.get(r);
          if (t != null) t.close();
        }
      }
    });
  }

  /**
   * Updates the parameters in {@code range} (inside one unit or several; usually one unit) from {@code grad} (F32,
   * 1-D, {@code range.length()} elements, element 0 at {@code range.start()}: the step's gradient of the range, e.g.
   * copied to host memory from the device) times {@code gradScale}, writing the new weights rounded to the store's
   * compute dtype into {@code weights} (the compute dtype, 1-D, laid out as {@code grad}) rather than the store's
   * {@link Role#WEIGHT}. The masters and the moments are the store's (in host memory) or streamed from DISK. Same
   * kernel, same elements as {@link #update}: the masters, moments and weights get the bits {@link #update} would give
   * them. For the optimizer on the host of a model computing on a device ({@link HostOptimizer}); needs an unsharded
   * optimizer over a store whose masters are not the compute weights.
   */
  public void updateInto(Range range, Tensor grad, Tensor weights, float lr, float beta1, float beta2, float eps,
      float weightDecay, float gradScale) {
    if (step == 0) throw new IllegalStateException("update() before beginStep()");
    if (shard != null && (shardMasters == null || !shard.contains(range))) {
      throw new IllegalStateException("updateInto needs an unsharded optimizer, or one holding its shard's masters with "
          + "the range inside the shard; this one updates " + shard + (shardMasters == null ? " with the store's masters"
          : ", not " + range));
    }
    if (store.weightsAreMasters() || store.computeDtype() == DType.F32) {
      throw new IllegalStateException("updateInto writes weights of a low-precision compute dtype; this store computes in "
          + store.computeDtype() + (store.weightsAreMasters() ? " with the masters as its weights" : ""));
    }
    Objects.requireNonNull(grad, "grad");
    Objects.requireNonNull(weights, "weights");
    if (grad.dtype() != DType.F32 || grad.numel() != range.length() || !grad.isContiguous()) {
      throw new IllegalArgumentException("the gradient of " + range + " must be " + range.length() + " contiguous F32 "
          + "elements, got " + grad);
    }
    if (weights.dtype() != store.computeDtype() || weights.numel() != range.length() || !weights.isContiguous()) {
      throw new IllegalArgumentException("the weights of " + range + " must be " + range.length() + " contiguous "
          + store.computeDtype() + " elements, got " + weights);
    }
    if (range.isEmpty()) return;
    try (Tensor g = grad.view(range.length()); Tensor w = weights.view(range.length())) {
      Map<Role, Tensor> held = new java.util.EnumMap<>(Role.class);
      held.put(Role.GRAD, g);
      held.put(Role.WEIGHT, w);
      if (shard == null) {
        updateHeld(range, held, range.start(), Role.GRAD, true, lr, beta1, beta2, eps, weightDecay, gradScale);
        return;
      }
      // the shard's masters and its moments in memory, cut to the range (the moments on DISK are streamed)
      long a = range.start() - shard.start(), b = range.end() - shard.start();
      List<Tensor> cut = new ArrayList<>();
      try {
        Map<Role, Tensor> mine = new java.util.EnumMap<>(Role.class);
        mine.put(Role.MASTER, shardMasters);
        if (shardM != null) mine.put(Role.ADAM_M, shardM);
        if (shardV != null) mine.put(Role.ADAM_V, shardV);
        for (Map.Entry<Role, Tensor> e : mine.entrySet()) {
          Tensor t = e.getValue().slice(0, a, b);
          cut.add(t);
          held.put(e.getKey(), t);
        }
        updateHeld(range, held, range.start(), Role.GRAD, true, lr, beta1, beta2, eps, weightDecay, gradScale);
      } finally {
        for (Tensor t : cut) t.close();
      }
    }
  }

  /**
   * The kernel over each parameter's part of {@code range}: each role from {@code staged} (1-D, element 0 at flat
   * element {@code stagedStart}) where it is there, else from the store.
   */
  private void updateChunk(Range range, Role gradRole, Map<Role, Tensor> staged, long stagedStart, boolean lowp,
      float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    updateChunk(range, gradRole, staged, stagedStart, lowp, step, lr, beta1, beta2, eps, weightDecay, gradScale, null);
  }

  /**
   * {@link #updateChunk} with the bias correction of step {@code t}, and the factor from {@code scaleAt} (F32, one
   * element where the parameters are) in place of {@code gradScale} when it is not null.
   */
  private void updateChunk(Range range, Role gradRole, Map<Role, Tensor> staged, long stagedStart, boolean lowp, long t,
      float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale, Tensor scaleAt) {
    for (ParameterStore.Param p : store.list()) {
      Range r = p.range().intersect(range);
      if (r.isEmpty()) continue;
      float wd = p.spec().decay() ? weightDecay : 0f;
      try (Tensor master = part(Role.MASTER, r, staged, stagedStart); Tensor grad = part(gradRole, r, staged, stagedStart);
          Tensor m = part(Role.ADAM_M, r, staged, stagedStart); Tensor v = part(Role.ADAM_V, r, staged, stagedStart);
          Tensor weight = lowp ? part(Role.WEIGHT, r, staged, stagedStart) : null) {
        if (scaleAt != null) {
          Ops.adamw(master, grad, m, v, weight, lr, beta1, beta2, eps, wd, scaleAt, t);
        } else {
          Ops.adamw(master, grad, m, v, weight, lr, beta1, beta2, eps, wd, gradScale, t);
        }
      }
    }
  }

  private Tensor part(Role role, Range r, Map<Role, Tensor> staged, long stagedStart) {
    Tensor s = staged.get(role);
    if (s == null) return store.slice(role, r);
    return s.slice(0, r.start() - stagedStart, r.end() - stagedStart);
  }

  /**
   * The update {@link #update}{@code (store.all(), gradRole, ...)} would make now, deferred: nothing changes until the
   * returned {@link UnitUpdate} applies it unit by unit, in the order {@code order} (each unit of the store once), to
   * each unit's masters handed to it in a host window (the masters on DISK are the caller's to write back); the
   * gradients and moments stream through the staging slots in a {@link ChunkStreamer.Pipeline} that reads the next
   * units' chunks while the caller computes. Same kernel, same elements, the step count and arguments of now: the
   * same bits as {@link #update}. Needs the roles streamed from DISK and the masters to be the compute weights; the
   * gradients of {@code gradRole} must not change until every unit is applied, and no other update may run meanwhile.
   */
  public UnitUpdate defer(List<Unit> order, Role gradRole, float lr, float beta1, float beta2, float eps, float weightDecay,
      float gradScale) {
    if (step == 0) throw new IllegalStateException("defer() before beginStep()");
    if (streamer == null || shard != null) {
      throw new IllegalStateException("only an unsharded optimizer that streams its state from DISK defers its update");
    }
    if (!store.weightsAreMasters()) {
      throw new IllegalStateException("a deferred update needs the masters to be the compute weights; this store computes in "
          + store.computeDtype());
    }
    java.util.Set<Unit> seen = new java.util.HashSet<>(order);
    if (seen.size() != order.size() || !seen.equals(new java.util.HashSet<>(store.units()))) {
      throw new IllegalArgumentException("the order of a deferred update must name each of the store's " + store.units().size()
          + " units once, got " + order.size() + " entries");
    }
    List<Range> ranges = new ArrayList<>();
    for (Unit u : order) ranges.add(u.elements());
    return new Deferred(this, streamer.pipeline(ranges, java.util.Set.of(Role.MASTER)), gradRole, step, lr, beta1, beta2, eps,
        weightDecay, gradScale);
  }

  /** An update of every unit made by {@code opt}'s {@link #defer}, applied unit by unit through its pipeline. */
  private record Deferred(AdamW opt, ChunkStreamer.Pipeline pipe, Role gradRole, long t, float lr, float beta1, float beta2,
      float eps, float weightDecay, float gradScale) implements UnitUpdate {
    @Override
    public void apply(Unit unit, Tensor masters) {
      Range e = unit.elements();
      if (masters.numel() != e.length()) {
        throw new IllegalArgumentException("the masters of " + unit.name() + " need " + e.length() + " elements, got "
            + masters.numel());
      }
      pipe.process(e, (chunk, staged) -> {
        Map<Role, Tensor> all = new java.util.EnumMap<>(staged);
        try (Tensor w = masters.slice(0, chunk.start() - e.start(), chunk.end() - e.start())) {
          all.put(Role.MASTER, w);
          opt.updateChunk(chunk, gradRole, all, chunk.start(), false, t, lr, beta1, beta2, eps, weightDecay, gradScale, null);
        }
      });
    }

    @Override
    public void finish() {
      pipe.close();
    }
  }

  /** One whole update ({@link #beginStep()} then {@link #update} over everything) from {@link Role#GRAD}. */
  public void update(float lr, float beta1, float beta2, float eps, float weightDecay, float gradScale) {
    beginStep();
    update(store.all(), Role.GRAD, lr, beta1, beta2, eps, weightDecay, gradScale);
  }

  /** Deletes the offload files and frees the staging slots (nothing when no moment is on DISK); idempotent. */
  @Override
  public void close() {
    if (shardM != null) shardM.close();
    if (shardV != null) shardV.close();
    try {
      closeResident();
    } finally {
      if (streamer != null) streamer.close();
      if (files != null && ownsFiles) files.close();
    }
  }
}
