package dev.athanor.offload;

import dev.athanor.memory.Tier;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;

/**
 * The units of a role on DISK that stay in memory all the same (an {@link OffloadConfig#residentUnits()} entry of
 * AdamW's moments): the role is paged in the {@link ParameterStore} over its unit files' views, and each resident unit
 * has a HOST window of its own (1-D F32, the unit's elements) mapped there for this object's whole life. Kernels and the
 * optimizer's {@link ChunkStreamer} find a resident unit's part in the store, in place; the others stay on DISK and are
 * streamed. The windows start as zeros, as new offload files do.
 *
 * <p>Layout contract: window of unit {@code u} holds the store's flat elements {@code u.elements()} of the role, element
 * 0 at {@code u.elements().start()} (as {@link ParameterStore#map} wants it).
 */
public final class ResidentWindows implements AutoCloseable {
  private final ParameterStore store;
  private final Role role;
  private final List<Unit> units = new ArrayList<>();
  private final List<Tensor> windows = new ArrayList<>();
  private boolean paged;  // the role was paged by this object
  private boolean closed;

  private ResidentWindows(ParameterStore store, Role role) {
    this.store = store;
    this.role = role;
  }

  /**
   * Pages {@code role} of {@code files}' store over the files' views and maps a zeroed HOST window for each unit named in
   * {@code resident} (none: nothing is paged, and this holds nothing). Throws {@link IllegalArgumentException} naming an
   * unknown unit (and the store's units); nothing is left paged or allocated then.
   */
  public static ResidentWindows pin(UnitFiles files, Role role, Set<String> resident) {
    Objects.requireNonNull(files, "files");
    Objects.requireNonNull(role, "role");
    ParameterStore store = files.store();
    ResidentWindows w = new ResidentWindows(store, role);
    if (Objects.requireNonNull(resident, "resident").isEmpty()) return w;
    if (!files.holds(role)) throw new IllegalArgumentException(role + " is not in these offload files: no unit of it can be resident");
    List<Unit> us = new ArrayList<>();
    for (String name : new java.util.TreeSet<>(resident)) us.add(store.unit(name));  // names the unit, or says which there are
    store.page(role, files.views(role));
    w.paged = true;
    try {
      for (Unit u : us) {
        Tensor t = Tensor.zeros(DType.F32, Device.CPU, Tier.HOST, u.elements().length()).detach();
        try {
          store.map(role, u, t);
        } catch (RuntimeException e) {
          t.close();
          throw e;
        }
        w.units.add(u);
        w.windows.add(t);
      }
    } catch (RuntimeException e) {
      w.close();
      throw e;
    }
    return w;
  }

  /** The role whose units this keeps. */
  public Role role() {
    return role;
  }

  /** The resident units, in name order. */
  public List<Unit> units() {
    return List.copyOf(units);
  }

  /** Host bytes of the windows. */
  public long bytes() {
    long b = 0;
    for (Tensor t : windows) b += t.byteSize();
    return b;
  }

  /** Unmaps and frees every window and ends the role's paging in the store (left unallocated); idempotent. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    try {
      if (!store.isClosed()) {
        for (Unit u : units) if (store.isMapped(role, u)) store.unmap(role, u);
        if (paged && store.isPaged(role)) store.unpage(role, false);
      }
    } finally {
      for (Tensor t : windows) t.close();
      windows.clear();
    }
  }
}
