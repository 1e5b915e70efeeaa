package dev.athanor.params;

import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The parameters of a model (or of one pipeline stage) in flat buffers, one per {@link Role}: compute
 * weights, FP32 masters, gradients, accumulated gradients, AdamW moments. Every role has the same layout: each
 * parameter at a fixed element offset (aligned to {@link #ALIGN} elements, padding zero), parameters grouped into
 * {@link Unit}s (embeddings, blocks, head) that are contiguous {@link Range}s. A range is the unit of sharding
 * and of offload; the optimizer and the gradient norm work on ranges.
 *
 * <p>Each role has a {@link Placement}; {@link #place} moves a role's buffer (the default: the model's device).
 * WEIGHT and MASTER share one buffer when the compute dtype is F32 and they are placed together. MASTER and WEIGHT
 * exist from construction (zeros); the other roles are allocated on demand ({@link #allocate}) and can be
 * released. Named views ({@link #view}) alias the flat buffers and are owned by the store: do not close them; they
 * are replaced when a role moves or is reallocated, which bumps {@link #generation()}.
 *
 * <p><b>Paging.</b> A role can be <i>paged</i> ({@link #page}): it then has no flat buffer; its data lives elsewhere
 * (offload files on DISK, one per unit) and the views of a unit's parameters are those files' DISK views, except
 * while a host window holding that unit is {@link #map mapped}, when they alias the window, so that kernels can
 * read and write them. Offload ({@code dev.athanor.offload.UnitPager}) maps a unit's weights before the unit runs
 * and its gradients while its backward runs. Layer code that takes its views through {@link #view} at each use
 * reads whatever is mapped. WEIGHT follows MASTER when they are one buffer.
 *
 * <p>Not thread-safe.
 */
public final class ParameterStore implements AutoCloseable {
  /** Element alignment of every parameter in the flat layout (256 bytes of F32). */
  public static final long ALIGN = 64;

  private final List<ParamSpec> specs;
  private final Map<String, Integer> byName = new HashMap<>();
  private final long[] offsets;
  private final long numel;
  private final List<Unit> units;
  private final DType computeDtype;
  private final EnumMap<Role, Placement> placements = new EnumMap<>(Role.class);
  private final EnumMap<Role, Tensor> flat = new EnumMap<>(Role.class);
  private final EnumMap<Role, Tensor[]> views = new EnumMap<>(Role.class);
  private final List<Param> params;
  private final EnumMap<Role, Tensor[]> backing = new EnumMap<>(Role.class);  // a paged role's views when unmapped (not owned)
  private final EnumMap<Role, Tensor[]> windows = new EnumMap<>(Role.class);  // a paged role's mapped window per unit
  private int generation;
  private boolean closed;

  /**
   * A store for {@code units} (name to the parameters of that unit, in order) on {@code device}, computing in
   * {@code computeDtype}. MASTER and WEIGHT are allocated (zeros) on the device's default placement.
   */
  public ParameterStore(Map<String, List<ParamSpec>> units, Device device, DType computeDtype) {
    this(units, device, computeDtype, true);
  }

  /**
   * A store as {@link #ParameterStore(Map, Device, DType)}; without {@code allocateWeights}, MASTER and WEIGHT are not
   * allocated either, for weights that will live elsewhere from the start ({@link #page} them before use).
   */
  public ParameterStore(Map<String, List<ParamSpec>> units, Device device, DType computeDtype, boolean allocateWeights) {
    Objects.requireNonNull(units, "units");
    Objects.requireNonNull(device, "device");
    this.computeDtype = Objects.requireNonNull(computeDtype, "computeDtype");
    if (!computeDtype.isFloating()) throw new IllegalArgumentException("compute dtype must be floating, got " + computeDtype);
    List<ParamSpec> all = new ArrayList<>();
    List<Unit> us = new ArrayList<>();
    List<Long> offs = new ArrayList<>();
    long at = 0;
    for (Map.Entry<String, List<ParamSpec>> e : units.entrySet()) {
      int first = all.size();
      long unitStart = at;
      for (ParamSpec s : e.getValue()) {
        if (byName.putIfAbsent(s.name(), all.size()) != null) {
          throw new IllegalArgumentException("parameter \"" + s.name() + "\" appears twice");
        }
        all.add(s);
        offs.add(at);
        at = Math.addExact(at, align(s.numel()));
      }
      us.add(new Unit(e.getKey(), us.size(), first, all.size(), new Range(unitStart, at)));
    }
    this.specs = List.copyOf(all);
    this.offsets = offs.stream().mapToLong(Long::longValue).toArray();
    this.numel = at;
    this.units = List.copyOf(us);
    List<Param> ps = new ArrayList<>(specs.size());
    for (int i = 0; i < specs.size(); i++) ps.add(new Param(this, i));
    this.params = Collections.unmodifiableList(ps);
    Placement home = Placement.of(device);
    for (Role r : Role.values()) placements.put(r, home);
    try {
      if (allocateWeights) {
        allocate(Role.MASTER);
        allocate(Role.WEIGHT);
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  private static long align(long n) {
    return Math.multiplyExact(Math.ceilDiv(n, ALIGN), ALIGN);
  }

  /**
   * Elements of a flat layout of {@code specs}, padding included (each parameter rounded up to {@link #ALIGN}, as the
   * constructor lays them out); throws {@link ArithmeticException} when that does not fit in a long.
   */
  public static long layoutNumel(Collection<ParamSpec> specs) {
    long n = 0;
    for (ParamSpec s : specs) n = Math.addExact(n, align(s.numel()));
    return n;
  }

  // ------------------------------------------------------------------ layout

  /** Every parameter, in layout order. */
  public List<Param> list() {
    return params;
  }

  public int size() {
    return specs.size();
  }

  /** The parameter called {@code name}. */
  public Param get(String name) {
    return params.get(indexOf(name));
  }

  public int indexOf(String name) {
    Integer i = byName.get(name);
    if (i == null) throw new IllegalArgumentException("no parameter named \"" + name + "\"");
    return i;
  }

  public boolean contains(String name) {
    return byName.containsKey(name);
  }

  /** The elements of parameter {@code i} (without its alignment padding). */
  public Range range(int i) {
    return new Range(offsets[i], offsets[i] + specs.get(i).numel());
  }

  /** Everything: {@code [0, numel())}. */
  public Range all() {
    return new Range(0, numel);
  }

  /** Elements of the flat layout, padding included. */
  public long numel() {
    return numel;
  }

  /** Elements that belong to parameters (padding excluded). */
  public long parameterCount() {
    long n = 0;
    for (ParamSpec s : specs) n += s.numel();
    return n;
  }

  public List<Unit> units() {
    return units;
  }

  /** The unit called {@code name}. */
  public Unit unit(String name) {
    for (Unit u : units) if (u.name().equals(name)) return u;
    throw new IllegalArgumentException("no unit named \"" + name + "\"; units: " + units.stream().map(Unit::name).toList());
  }

  public DType computeDtype() {
    return computeDtype;
  }

  /** Bytes of one role's buffer (counted once when WEIGHT shares MASTER's). */
  public long bytes(Role role) {
    return numel * role.dtype(computeDtype).byteSize();
  }

  /** Bumped whenever a buffer is allocated, moved or released: views taken before are stale. */
  public int generation() {
    return generation;
  }

  // ------------------------------------------------------------------ buffers

  public Placement placement(Role role) {
    return placements.get(role);
  }

  /** Whether the role exists: a flat buffer, or paged ({@link #isPaged}). */
  public boolean has(Role role) {
    return flat.containsKey(role) || backing.containsKey(role);
  }

  /** Whether the role is paged: no flat buffer, unit views on DISK unless a host window is {@link #map mapped}. */
  public boolean isPaged(Role role) {
    return backing.containsKey(role);
  }

  /** Whether WEIGHT is MASTER's buffer (F32 compute, placed together). */
  public boolean weightsAreMasters() {
    return computeDtype == DType.F32 && placements.get(Role.WEIGHT).equals(placements.get(Role.MASTER));
  }

  /** Allocates a role's buffer (zeros) at its placement; nothing when it exists. */
  public void allocate(Role role) {
    checkOpen();
    if (has(role)) return;
    if (role == Role.WEIGHT && weightsAreMasters()) {
      install(role, flat.get(Role.MASTER));
      return;
    }
    Placement p = placements.get(role);
    install(role, Tensor.zeros(role.dtype(computeDtype), p.device(), p.tier(), numel).detach());
  }

  /** Frees a role's buffer (not MASTER or WEIGHT). */
  public void release(Role role) {
    checkOpen();
    if (role == Role.MASTER || role == Role.WEIGHT) throw new IllegalArgumentException(role + " cannot be released");
    if (isPaged(role)) {
      unpageViews(role);
      return;
    }
    uninstall(role);
  }

  // ------------------------------------------------------------------ paging

  /**
   * Pages {@code role} (MASTER, which takes WEIGHT with it when {@link #weightsAreMasters()} and leaves low-precision
   * weights apart from it in place (ZeRO 1 with the optimizer on the host keeps its shard's masters itself), GRAD, or one of
   * AdamW's moments ADAM_M and ADAM_V, whose offloaded units an optimizer maps when it keeps them in memory): its flat
   * buffer is freed without being copied anywhere (the caller has saved what it needs) and its views become
   * {@code diskViews}, one per parameter in layout order, owned by the caller, who keeps them open until
   * {@link #unpage} or {@link #release}. Kernels cannot address them: {@link #map} a unit's window first.
   */
  public void page(Role role, List<Tensor> diskViews) {
    checkOpen();
    Objects.requireNonNull(diskViews, "diskViews");
    pageOver(role, diskViews.toArray(new Tensor[0]));
  }

  /**
   * Pages {@code role} as {@link #page(Role, List)} does but with nothing behind it: a unit's views exist only while
   * a window is {@link #map mapped} (ZeRO 3: the windows are gathered from the replicas' shards); reading an unmapped
   * one throws, naming the parameter.
   */
  public void pageWithoutBacking(Role role) {
    checkOpen();
    pageOver(role, new Tensor[specs.size()]);
  }

  /** Pages {@code role} over {@code b}, one view per parameter (null: nothing behind it). */
  private void pageOver(Role role, Tensor[] b) {
    if (role != Role.MASTER && role != Role.GRAD && role != Role.ADAM_M && role != Role.ADAM_V) {
      throw new IllegalArgumentException("only MASTER (with WEIGHT), GRAD, ADAM_M and ADAM_V can be paged, not " + role);
    }
    if (role == Role.MASTER && !weightsAreMasters() && computeDtype == DType.F32) {
      throw new IllegalArgumentException("MASTER can be paged only when WEIGHT is the same buffer (F32 compute, placed "
          + "together) or of a low-precision dtype apart from it; this store computes in F32 with WEIGHT@"
          + placements.get(Role.WEIGHT));
    }
    if (isPaged(role)) throw new IllegalStateException(role + " is already paged");
    if (b.length != specs.size()) {
      throw new IllegalArgumentException("diskViews has " + b.length + " tensors, the store " + specs.size() + " parameters");
    }
    for (int i = 0; i < b.length; i++) {
      if (b[i] != null && (!java.util.Arrays.equals(b[i].shape(), specs.get(i).shape()) || b[i].dtype() != role.dtype(computeDtype))) {
        throw new IllegalArgumentException("diskViews[" + i + "] is " + b[i] + ", parameter " + specs.get(i) + " needs "
            + role.dtype(computeDtype));
      }
    }
    // MASTER takes WEIGHT with it when they are one buffer; low-precision weights apart stay (ZeRO 1 on the host)
    List<Role> roles = role == Role.MASTER && weightsAreMasters() ? List.of(Role.MASTER, Role.WEIGHT) : List.of(role);
    for (Role r : roles) {
      uninstall(r);
      backing.put(r, b);
      windows.put(r, new Tensor[units.size()]);
      views.put(r, b.clone());
    }
    generation++;
  }

  /**
   * Ends paging of {@code role} (MASTER takes WEIGHT with it): every window must be unmapped; the role gets a flat
   * buffer again (zeros) for the caller to fill, e.g. from the files it paged to.
   */
  public void unpage(Role role) {
    unpage(role, true);
  }

  /**
   * Ends paging of {@code role} (MASTER takes WEIGHT with it): every window must be unmapped; with {@code allocate}
   * the role gets a flat buffer again (zeros) for the caller to fill, else it is left unallocated (weights that were
   * never in memory, of a model being discarded).
   */
  public void unpage(Role role, boolean allocate) {
    checkOpen();
    if (!isPaged(role)) throw new IllegalStateException(role + " is not paged");
    unpageViews(role);
    if (!allocate) return;
    allocate(role);
    if (role == Role.MASTER) allocate(Role.WEIGHT);
  }

  private void unpageViews(Role role) {
    List<Role> roles = (role == Role.MASTER || role == Role.WEIGHT) && isPaged(Role.WEIGHT)
        ? List.of(Role.MASTER, Role.WEIGHT) : List.of(role);
    for (Role r : roles) {
      Tensor[] w = windows.get(r);
      if (w != null) for (Tensor t : w) if (t != null) throw new IllegalStateException(r + " still has a mapped window");
    }
    for (Role r : roles) {
      backing.remove(r);
      windows.remove(r);
      views.remove(r);
    }
    generation++;
  }

  /** Whether {@code unit}'s window of the paged {@code role} is mapped. */
  public boolean isMapped(Role role, Unit unit) {
    Tensor[] w = windows.get(role);
    return w != null && w[unit.index()] != null;
  }

  /**
   * Maps {@code window} (1-D, addressable, the role's dtype, exactly the unit's elements, in the flat layout restricted
   * to the unit) as {@code unit}'s part of the paged {@code role}: the unit's views alias it until {@link #unmap}. The
   * caller owns the window and fills it (or not) before kernels read it.
   */
  public void map(Role role, Unit unit, Tensor window) {
    checkOpen();
    Objects.requireNonNull(window, "window");
    if (!isPaged(role)) throw new IllegalStateException(role + " is not paged");
    if (window.tier() == Tier.DISK || window.rank() != 1 || window.numel() != unit.elements().length()
        || window.dtype() != role.dtype(computeDtype) || !window.isContiguous()) {
      throw new IllegalArgumentException("the window of " + role + " of unit " + unit.name() + " must be an addressable 1-D "
          + role.dtype(computeDtype) + " tensor of " + unit.elements().length() + " elements, got " + window);
    }
    if (isMapped(role, unit)) throw new IllegalStateException(role + " of unit " + unit.name() + " is already mapped");
    List<Role> roles = (role == Role.MASTER || role == Role.WEIGHT) && isPaged(Role.WEIGHT)
        ? List.of(Role.MASTER, Role.WEIGHT) : List.of(role);
    Tensor[] v = views.get(role);
    long base = window.offset() - unit.elements().start();
    for (int i = unit.firstParam(); i < unit.endParam(); i++) {
      long[] shape = specs.get(i).shape();
      v[i] = Tensor.wrap(window.storage(), window.dtype(), shape, Tensor.contiguousStrides(shape), base + offsets[i]).detach();
    }
    for (Role r : roles) {
      windows.get(r)[unit.index()] = window;
      if (views.get(r) != v) System.arraycopy(v, unit.firstParam(), views.get(r), unit.firstParam(), unit.endParam() - unit.firstParam());
    }
  }

  /** Unmaps {@code unit}'s window of the paged {@code role}: its views are the DISK views again. */
  public void unmap(Role role, Unit unit) {
    checkOpen();
    if (!isMapped(role, unit)) throw new IllegalStateException(role + " of unit " + unit.name() + " is not mapped");
    List<Role> roles = (role == Role.MASTER || role == Role.WEIGHT) && isPaged(Role.WEIGHT)
        ? List.of(Role.MASTER, Role.WEIGHT) : List.of(role);
    Tensor[] v = views.get(role), b = backing.get(role);
    for (int i = unit.firstParam(); i < unit.endParam(); i++) {
      v[i].close();
      v[i] = b[i];
    }
    for (Role r : roles) {
      windows.get(r)[unit.index()] = null;
      if (views.get(r) != v) System.arraycopy(b, unit.firstParam(), views.get(r), unit.firstParam(), unit.endParam() - unit.firstParam());
    }
  }

  /**
   * Moves a role's buffer to {@code to} (copying its contents when allocated); later allocations use it. Moving
   * MASTER or WEIGHT of an F32 model apart gives WEIGHT a buffer of its own; moving them together shares one.
   */
  public void place(Role role, Placement to) {
    checkOpen();
    Objects.requireNonNull(to, "placement");
    if (placements.get(role).equals(to)) return;
    placements.put(role, to);
    if (!has(role)) return;
    if ((role == Role.WEIGHT || role == Role.MASTER) && weightsAreMasters()) {
      uninstall(role);  // now placed with its twin: share the twin's buffer
      install(role, flat.get(role == Role.WEIGHT ? Role.MASTER : Role.WEIGHT));
      return;
    }
    Tensor moved = copyTo(flat.get(role), to);  // a buffer shared with the twin stays with the twin
    uninstall(role);
    install(role, moved);
  }

  private Tensor copyTo(Tensor src, Placement to) {
    Tensor t = Tensor.empty(src.dtype(), to.device(), to.tier(), numel).detach();
    try {
      t.copyFrom(src);
      return t;
    } catch (RuntimeException e) {
      t.close();
      throw e;
    }
  }

  private void install(Role role, Tensor buffer) {
    flat.put(role, buffer);
    Tensor[] v = new Tensor[specs.size()];
    try {
      for (int i = 0; i < v.length; i++) {
        long[] shape = specs.get(i).shape();
        v[i] = Tensor.wrap(buffer.storage(), buffer.dtype(), shape, Tensor.contiguousStrides(shape), offsets[i]).detach();
      }
    } catch (RuntimeException e) {
      for (Tensor t : v) if (t != null) t.close();
      throw e;
    }
    views.put(role, v);
    generation++;
  }

  private void uninstall(Role role) {
    Tensor buffer = flat.remove(role);
    Tensor[] v = views.remove(role);
    if (v != null) for (Tensor t : v) t.close();
    if (buffer != null && !flat.containsValue(buffer)) buffer.close();
    generation++;
  }

  /** A role's whole flat buffer, 1-D of {@link #numel()} elements (owned by the store: do not close). */
  public Tensor flat(Role role) {
    Tensor t = flat.get(role);
    if (t == null && isPaged(role)) {
      throw new IllegalStateException(role + " is paged to DISK unit by unit and has no flat buffer");
    }
    if (t == null) throw notAllocated(role);
    return t;
  }

  /** Parameter {@code i} of a role, in its shape (owned by the store: do not close). */
  public Tensor view(Role role, int i) {
    Tensor[] v = views.get(role);
    if (v == null) throw notAllocated(role);
    if (v[i] == null) {
      throw new IllegalStateException(role + " of " + specs.get(i).name() + " is paged without a backing copy (e.g. ZeRO 3 "
          + "shards) and its unit is not mapped");
    }
    return v[i];
  }

  /** Parameter {@code name} of a role, in its shape (owned by the store: do not close). */
  public Tensor view(Role role, String name) {
    return view(role, indexOf(name));
  }

  /** A 1-D view of {@code range} of a role's buffer: a new reference the caller closes. */
  public Tensor slice(Role role, Range range) {
    checkRange(range);
    if (isPaged(role)) {
      for (Unit u : units) {
        if (!u.elements().contains(range)) continue;
        if (!isMapped(role, u)) {
          throw new IllegalStateException(role + " of unit " + u.name() + " is paged to DISK and not mapped; range " + range);
        }
        long s0 = u.elements().start();
        return windows.get(role)[u.index()].slice(0, range.start() - s0, range.end() - s0);
      }
      throw new IllegalArgumentException("range " + range + " of the paged " + role + " is not inside one unit");
    }
    return flat(role).slice(0, range.start(), range.end());
  }

  private void checkRange(Range r) {
    if (r.end() > numel) throw new IllegalArgumentException("range " + r + " exceeds the store's " + numel + " elements");
  }

  private IllegalStateException notAllocated(Role role) {
    checkOpen();
    return new IllegalStateException(role + " buffer is not allocated" + (role == Role.GRAD || role == Role.GRAD_ACC
        ? " (no backward pass has run)" : ""));
  }

  /** Sets a range of a role to zero. */
  public void zero(Role role, Range range) {
    if (range.isEmpty()) return;
    try (Tensor s = slice(role, range)) {
      Ops.fill(s, 0f);
    }
  }

  /** Sets a whole role to zero. */
  public void zero(Role role) {
    Ops.fill(flat(role), 0f);
  }

  /** Sets the micro-batch gradient ({@link Role#GRAD}) to zero, allocating it when there is none. */
  public void zeroGradients() {
    if (has(Role.GRAD)) {
      zero(Role.GRAD);
    } else {
      allocate(Role.GRAD);
    }
  }

  /** Refreshes WEIGHT from MASTER over {@code range} (rounding to the compute dtype); nothing when they are one buffer. */
  public void syncWeights(Range range) {
    if (weightsAreMasters() || range.isEmpty()) return;
    try (Tensor m = slice(Role.MASTER, range); Tensor w = slice(Role.WEIGHT, range)) {
      if (m.tier() != Tier.DISK && w.tier() != Tier.DISK && m.device().equals(w.device())) {
        Ops.convert(m, w);
        return;
      }
      try (Tensor host = m.to(Tier.HOST); Tensor low = Ops.convert(host, computeDtype)) {
        w.copyFrom(low);  // rounded on the host, then moved where WEIGHT lives
      }
    }
  }

  /** Refreshes all of WEIGHT from MASTER. */
  public void syncWeights() {
    syncWeights(all());
  }

  public boolean isClosed() {
    return closed;
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("parameter store is closed");
  }

  @Override
  public void close() {
    if (closed) return;
    for (Role r : Role.values()) {
      Tensor[] w = windows.get(r);
      if (w != null) for (Unit u : units) if (w[u.index()] != null) unmap(r, u);
    }
    for (Role r : List.copyOf(backing.keySet())) if (backing.containsKey(r)) unpageViews(r);
    for (Role r : Role.values()) uninstall(r);
    closed = true;
  }

  @Override
  public String toString() {
    StringBuilder sb = new StringBuilder("ParameterStore(" + specs.size() + " parameters, " + numel + " elements, "
        + units.size() + " units;");
    for (Role r : Role.values()) {
      if (has(r)) sb.append(' ').append(r).append('@').append(isPaged(r) ? "paged" : placements.get(r));
    }
    return sb.append(')').toString();
  }

  /** A handle on one parameter: its spec, range and views of each role. */
  public static final class Param {
    private final ParameterStore store;
    private final int index;

    private Param(ParameterStore store, int index) {
      this.store = store;
      this.index = index;
    }

    public int index() {
      return index;
    }

    public ParamSpec spec() {
      return store.specs.get(index);
    }

    public String name() {
      return spec().name();
    }

    public Range range() {
      return store.range(index);
    }

    /** The view of this parameter in {@code role} (owned by the store). */
    public Tensor get(Role role) {
      return store.view(role, index);
    }

    /** FP32 master weights. */
    public Tensor master() {
      return get(Role.MASTER);
    }

    /** The weights in the compute dtype (the master when computing in F32). */
    public Tensor compute() {
      return get(Role.WEIGHT);
    }

    /** The current micro-batch's gradient (FP32). */
    public Tensor grad() {
      return get(Role.GRAD);
    }

    @Override
    public String toString() {
      return spec() + "@" + range();
    }
  }
}
