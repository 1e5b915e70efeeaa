package dev.athanor.offload;

import dev.athanor.memory.AllocationFailedException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Storage;
import dev.athanor.memory.Tier;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.nio.file.FileStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.EnumMap;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Roles of a {@link ParameterStore} kept on the DISK tier, one file per unit and role, in the store's flat layout
 * restricted to the unit (the unit's first element at byte 0; padding reads as zeros). Files are named after the
 * unit and the role ({@code block.3.adam_m.bin}), never after an object's identity, inside a subdirectory of the
 * offload directory that belongs to this object ({@code athanor-offload-<host>-<pid>-<n>}) and is removed with its
 * files on {@link #close()}. A run that was killed cannot remove its directory: the next one on the same machine and
 * directory does, once that process is gone. Every file is DISK storage accounted in {@link MemoryManager}.
 *
 * <p>The directory is checked when this is built, before anything trains: it must be creatable and writable and its
 * file system must have room for every file (they are created sparse, so that is checked up front); otherwise an
 * {@link AllocationFailedException} names the tier, the directory and the bytes.
 *
 * <p>Files of a {@link #range()} of the flat layout only ({@link #UnitFiles(ParameterStore, Set, Path, Range)}, e.g. a
 * ZeRO rank's shard of AdamW's moments): each unit's file then holds the unit's elements in that range ({@link
 * #extent}; its first element at byte 0), and a unit outside it has none.
 *
 * <p>Resident units ({@link #UnitFiles(ParameterStore, Set, Path, Range, java.util.Map)}, e.g. a ZeRO rank's shard with
 * {@link OffloadConfig#residentUnits()}): per role, the named units' parts are kept in HOST memory (a zeroed window of
 * the unit's extent each, the same layout as its file would have) and have no file. {@link #transfer} and {@link #slice}
 * reach a resident part in that window (a memory copy, not counted as DISK traffic in {@link #stats()}), and {@link
 * ChunkStreamer} hands the window to the computation in place, so the callers treat every unit alike.
 */
public final class UnitFiles implements AutoCloseable {
  private static final AtomicLong SEQ = new AtomicLong();
  private static final String PREFIX = "athanor-offload-";
  /** This machine's name as the kernel has it (letters, digits, '.', '-'), so that a shared directory's owners differ. */
  private static final String HOST = hostName();
  private static final java.util.regex.Pattern OURS = java.util.regex.Pattern.compile(
      java.util.regex.Pattern.quote(PREFIX + HOST) + "-(\\d+)-\\d+");

  private static String hostName() {
    try {
      String h = Files.readString(Path.of("/proc/sys/kernel/hostname")).strip().replaceAll("[^A-Za-z0-9.-]", "_");
      return h.isEmpty() ? "host" : h;
    } catch (IOException | RuntimeException e) {
      return "host";
    }
  }

  /**
   * Deletes what runs on this machine that ended without closing their files (killed) left in {@code parent}: the
   * directories named after this machine and a process id that is no longer running, with the unit files in them.
   * Anything else there (another machine's directories, files not named like ours) is left alone.
   */
  static int removeStale(Path parent) {
    int removed = 0;
    try (java.nio.file.DirectoryStream<Path> ds = Files.newDirectoryStream(parent, PREFIX + "*")) {
      for (Path d : ds) {
        java.util.regex.Matcher m = OURS.matcher(d.getFileName().toString());
        if (!m.matches() || !Files.isDirectory(d, java.nio.file.LinkOption.NOFOLLOW_LINKS)) continue;
        long pid;
        try {
          pid = Long.parseLong(m.group(1));
        } catch (NumberFormatException e) {
          continue;
        }
        if (pid == ProcessHandle.current().pid() || ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) continue;
        try (java.nio.file.DirectoryStream<Path> fs = Files.newDirectoryStream(d, "*.bin")) {
          for (Path f : fs) if (Files.isRegularFile(f, java.nio.file.LinkOption.NOFOLLOW_LINKS)) Files.deleteIfExists(f);
        }
        Files.deleteIfExists(d);  // fails when something else is in it: then it stays
        removed++;
      }
    } catch (IOException | RuntimeException e) {
      // best effort: leftovers of killed runs only cost disk space
    }
    return removed;
  }

  private final ParameterStore store;
  private final Set<Role> roles;
  private final Range range;
  private final Path dir;
  private final EnumMap<Role, Storage[]> files = new EnumMap<>(Role.class);
  private final EnumMap<Role, Tensor[]> views = new EnumMap<>(Role.class);
  private final EnumMap<Role, Tensor[]> windows = new EnumMap<>(Role.class);  // per role, the resident units' HOST parts
  private final TransferStats stats = new TransferStats();
  private volatile boolean closed;

  /** Creates the files (reading as zeros) of {@code roles} for every unit of {@code store} under {@code directory}. */
  public UnitFiles(ParameterStore store, Set<Role> roles, Path directory) {
    this(store, roles, directory, store.all());
  }

  /**
   * Creates the files (reading as zeros) of {@code roles} for the elements of {@code range} of {@code store}'s flat
   * layout under {@code directory}: per unit, its part of the range ({@link #extent}). Only F32 roles can be kept for a
   * range that is not the whole store.
   */
  public UnitFiles(ParameterStore store, Set<Role> roles, Path directory, Range range) {
    this(store, roles, directory, range, java.util.Map.of());
  }

  /**
   * As {@link #UnitFiles(ParameterStore, Set, Path, Range)}, with the parts of the units {@code resident} names for a role
   * (of {@code roles}; other roles' entries are ignored) kept in HOST memory instead of files (zeros, as new files read).
   * Throws {@link IllegalArgumentException} naming a unit the store does not have.
   */
  public UnitFiles(ParameterStore store, Set<Role> roles, Path directory, Range range,
      java.util.Map<Role, Set<String>> resident) {
    this.store = store;
    this.roles = Set.copyOf(roles);
    if (!store.all().contains(range)) throw new IllegalArgumentException("range " + range + " is outside the store's " + store.all());
    this.range = range;
    boolean whole = range.equals(store.all());
    EnumMap<Role, Set<Unit>> kept = new EnumMap<>(Role.class);  // the resident units of each role here
    for (Role r : roles) {
      Set<Unit> us = new java.util.HashSet<>();
      for (String name : resident.getOrDefault(r, Set.of())) us.add(store.unit(name));  // names it, or lists the units
      kept.put(r, us);
    }
    long bytes = 0;
    for (Role r : roles) {
      if (!whole && r.dtype(store.computeDtype()) != dev.athanor.tensor.DType.F32) {
        throw new IllegalArgumentException(r + " is not F32: only F32 roles can be kept for a part " + range + " of the store");
      }
      bytes = Math.addExact(bytes, whole ? store.bytes(r) : Math.multiplyExact(range.length(), 4L));
      for (Unit u : kept.get(r)) bytes -= extent(u).length() * r.dtype(store.computeDtype()).byteSize();  // no file
    }
    String what = "DISK tier: cannot keep " + MemoryManager.formatBytes(bytes) + " of " + new java.util.TreeSet<>(roles)
        + " in the offload directory " + directory.toAbsolutePath();
    this.dir = createDirectory(directory, bytes, what);
    try {
      checkRoom(dir, bytes);
      for (Role r : roles) {
        Storage[] s = new Storage[store.units().size()];
        Tensor[] w = new Tensor[store.units().size()];
        files.put(r, s);
        windows.put(r, w);
        for (Unit u : store.units()) {
          Range e = extent(u);
          if (e.isEmpty()) continue;
          if (kept.get(r).contains(u)) {
            w[u.index()] = Tensor.zeros(r.dtype(store.computeDtype()), Device.CPU, Tier.HOST, e.length()).detach();
            continue;
          }
          long unitBytes = e.length() * r.dtype(store.computeDtype()).byteSize();
          s[u.index()] = Storage.allocateFile(dir.resolve(fileName(u, r)), unitBytes);
        }
        if (!whole) continue;  // a part of the store: no views of whole parameters (see slice)
        Tensor[] v = new Tensor[store.size()];
        views.put(r, v);
        for (Unit u : store.units()) {
          for (int i = u.firstParam(); i < u.endParam(); i++) {
            long[] shape = store.list().get(i).spec().shape();
            v[i] = Tensor.wrap(storage(r, u), r.dtype(store.computeDtype()), shape, Tensor.contiguousStrides(shape),
                store.range(i).start() - u.elements().start()).detach();
          }
        }
      }
    } catch (IOException e) {
      close();
      throw new AllocationFailedException(Tier.DISK, Device.CPU, bytes, what + ": " + e.getMessage(), e);
    } catch (RuntimeException e) {
      close();
      if (e instanceof AllocationFailedException && !(e instanceof dev.athanor.memory.OutOfBudgetException)) {
        throw new AllocationFailedException(Tier.DISK, Device.CPU, bytes, what + ": " + e.getMessage(), e);
      }
      throw e;
    }
  }

  /**
   * Creates a subdirectory of {@code directory} that belongs to this process ({@code athanor-offload-<host>-<pid>-<n>},
   * removed by its owner on close, or by a later run once this process is gone), after removing what killed runs left
   * there. Fails with an {@link AllocationFailedException} of {@code bytes}, starting with {@code what}.
   */
  static Path createDirectory(Path directory, long bytes, String what) {
    Path parent = directory.toAbsolutePath();
    Path dir = parent.resolve(PREFIX + HOST + "-" + ProcessHandle.current().pid() + "-" + SEQ.incrementAndGet());
    try {
      Files.createDirectories(parent);
      removeStale(parent);
      Files.createDirectory(dir);
    } catch (IOException | RuntimeException e) {
      throw new AllocationFailedException(Tier.DISK, Device.CPU, bytes, what + ": cannot create a directory there ("
          + e + ")", e);
    }
    return dir;
  }

  /** Throws when {@code dir} is not writable or its file system has less than {@code bytes} free (the files are sparse). */
  static void checkRoom(Path dir, long bytes) throws IOException {
    if (!Files.isWritable(dir)) throw new IOException(dir + " is not writable");
    FileStore fs = Files.getFileStore(dir);
    long free = fs.getUsableSpace();
    if (free < bytes) {
      throw new IOException("its file system has " + MemoryManager.formatBytes(free) + " free, "
          + MemoryManager.formatBytes(bytes - free) + " short");
    }
  }

  /** The file name of a unit's role: the unit's name (characters other than letters, digits, '.', '-' as '_'). */
  static String fileName(Unit u, Role r) {
    return u.name().replaceAll("[^A-Za-z0-9.-]", "_") + "." + r.name().toLowerCase(Locale.ROOT) + ".bin";
  }

  /** The elements of the flat layout these files hold (the whole store, or a part of it). */
  public Range range() {
    return range;
  }

  /** The elements of {@code unit} these files hold (its part of {@link #range()}; empty: none): byte 0 is its start. */
  public Range extent(Unit unit) {
    return unit.elements().intersect(range);
  }

  /**
   * A DISK view (1-D, F32; the caller closes it, the file stays) of {@code role}'s flat elements {@code elements},
   * which must lie in one unit's {@link #extent}.
   */
  public Tensor slice(Role role, Range elements) {
    for (Unit u : store.units()) {
      Range e = extent(u);
      if (e.isEmpty() || !e.contains(elements)) continue;
      dev.athanor.tensor.DType dt = role.dtype(store.computeDtype());
      return Tensor.wrap(storage(role, u), dt, new long[] {elements.length()}, new long[] {1}, elements.start() - e.start());
    }
    throw new IllegalArgumentException("elements " + elements + " do not lie in one unit's part of " + range + " held here");
  }

  /** The subdirectory holding the files. */
  public Path directory() {
    return dir;
  }

  public Set<Role> roles() {
    return roles;
  }

  public boolean holds(Role role) {
    return roles.contains(role);
  }

  /**
   * The storage of {@code unit}'s {@code role} (owned by this object): its DISK file, or for a resident unit its HOST
   * window.
   */
  public Storage storage(Role role, Unit unit) {
    checkOpen();
    Storage[] s = files.get(role);
    if (s == null) throw new IllegalArgumentException(role + " is not on DISK here; roles on DISK: " + roles);
    Tensor w = windows.get(role)[unit.index()];
    if (w != null) return w.storage();
    if (s[unit.index()] == null) {
      throw new IllegalArgumentException("unit " + unit.name() + " has no elements in " + range + " held here");
    }
    return s[unit.index()];
  }

  /** The file of {@code unit}'s {@code role} (not for a {@link #isResident resident} unit, which has none). */
  public Path file(Role role, Unit unit) {
    if (isResident(role, unit)) throw new IllegalArgumentException(unit.name() + "'s " + role + " is resident: it has no file");
    return storage(role, unit).path();
  }

  /** Whether {@code unit}'s part of {@code role} is kept in HOST memory here rather than in a file. */
  public boolean isResident(Role role, Unit unit) {
    Tensor[] w = windows.get(role);
    return w != null && w[unit.index()] != null;
  }

  /** HOST bytes of the resident units' parts (0: none). */
  public long residentBytes() {
    long b = 0;
    for (Tensor[] w : windows.values()) for (Tensor t : w) if (t != null) b += t.byteSize();
    return b;
  }

  /**
   * DISK views of every parameter of {@code role}, in parameter order (owned by this object: do not close). Only for
   * files of the whole store (a part has {@link #slice}s).
   */
  public List<Tensor> views(Role role) {
    checkOpen();
    if (!range.equals(store.all())) {
      throw new IllegalStateException("these files hold the part " + range + " of the store only; take slices of it");
    }
    Tensor[] v = views.get(role);
    if (v == null) throw new IllegalArgumentException(role + " is not on DISK here; roles on DISK: " + roles);
    return List.of(v);
  }

  /** The traffic to and from these files so far, and the time the computation waited for it. */
  public TransferStats stats() {
    return stats;
  }

  /**
   * Moves {@code bytes} between host memory at {@code host} and {@code unit}'s file of {@code role} at byte
   * {@code offset} (counted from the file's first element, {@link #extent}'s start): writes to the file when {@code
   * write}, else reads from it. Counted in {@link #stats()} and recorded as a JDK Flight Recorder event (a resident
   * unit's window: a memory copy, neither counted nor recorded). A failure (the file deleted or truncated under the run,
   * a full disk) throws {@link OffloadIOException} naming the tier, the file, the unit, the role and the bytes. Thread-safe.
   */
  public void transfer(Role role, Unit unit, boolean write, long offset, long host, long bytes) {
    Storage s = storage(role, unit);
    if (isResident(role, unit)) {  // a memory copy: no DISK traffic
      if (write) {
        s.write(offset, host, bytes);
      } else {
        s.read(offset, host, bytes);
      }
      return;
    }
    transfer(s, stats, unit.name(), role.name(), write, offset, host, bytes);
  }

  /**
   * Moves the flat elements {@code elements} (inside {@link #range()}, across units as needed) of the F32 {@code role}
   * between these files and {@code host} (a contiguous HOST tensor of {@code elements.length()} F32 elements): into
   * {@code host} from the files, or from it to them when {@code write}; unit by unit through {@link #transfer(Role, Unit,
   * boolean, long, long, long)}, on the calling thread. A read's time also counts as a stall in {@link #stats()}: the
   * caller (the computation) waits for it.
   */
  public void transfer(Role role, Range elements, Tensor host, boolean write) {
    if (!range.contains(elements) && !elements.isEmpty()) {
      throw new IllegalArgumentException("elements " + elements + " are outside the " + range + " these files hold");
    }
    if (host.dtype() != dev.athanor.tensor.DType.F32 || host.numel() != elements.length() || !host.isContiguous()
        || host.tier() != Tier.HOST) {
      throw new IllegalArgumentException("the host side of " + elements + " must be " + elements.length() + " contiguous F32 "
          + "HOST elements, got " + host);
    }
    long t0 = System.nanoTime();
    for (Unit u : store.units()) {
      Range part = extent(u).intersect(elements);
      if (part.isEmpty()) continue;
      transfer(role, u, write, (part.start() - extent(u).start()) * 4, host.address() + (part.start() - elements.start()) * 4,
          part.length() * 4);
    }
    if (!write) stats.stalled(System.nanoTime() - t0);
  }

  /**
   * Moves {@code bytes} between host memory at {@code host} and {@code file} at byte {@code offset}, counted in {@code
   * stats} and recorded as a JDK Flight Recorder event naming {@code unit} and {@code role}; a failure throws {@link
   * OffloadIOException} naming them, the file and the bytes (a full disk: the file system's message says so).
   */
  static void transfer(Storage file, TransferStats stats, String unit, String role, boolean write, long offset, long host,
      long bytes) {
    OffloadEvents.Transfer ev = new OffloadEvents.Transfer();
    ev.begin();
    long t0 = System.nanoTime();
    try {
      if (write) {
        file.write(offset, host, bytes);
      } else {
        file.read(offset, host, bytes);
      }
    } catch (RuntimeException e) {
      throw new OffloadIOException(file.path(), (write ? "writing " : "reading ") + role + " of unit " + unit + " ("
          + bytes + " bytes at offset " + offset + ") " + (write ? "to " : "from ") + file.path()
          + " on the DISK tier failed: " + e.getMessage(), e);
    }
    stats.transferred(write, bytes, System.nanoTime() - t0);
    if (ev.shouldCommit()) {
      ev.unit = unit;
      ev.role = role;
      ev.direction = write ? "host to disk" : "disk to host";
      ev.bytes = bytes;
      ev.commit();
    }
  }

  /** The store whose layout the files follow. */
  public ParameterStore store() {
    return store;
  }

  private void checkOpen() {
    if (closed) throw new IllegalStateException("the offload files in " + dir + " are closed");
  }

  /** Deletes the files and their subdirectory; idempotent. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    for (Tensor[] v : views.values()) for (Tensor t : v) if (t != null) t.close();
    for (Storage[] s : files.values()) for (Storage st : s) if (st != null) st.close();
    for (Tensor[] w : windows.values()) for (Tensor t : w) if (t != null) t.close();
    views.clear();
    files.clear();
    windows.clear();
    removeDirectory(dir);
  }

  /** Deletes {@code dir} once its files are gone; one that someone else put a file in stays (nothing of ours is left). */
  static void removeDirectory(Path dir) {
    try {
      Files.deleteIfExists(dir);
    } catch (IOException ignored) {
      // a file someone else put there keeps the directory; nothing of ours is left in it
    }
  }
}
