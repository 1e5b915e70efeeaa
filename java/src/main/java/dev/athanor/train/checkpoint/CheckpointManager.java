package dev.athanor.train.checkpoint;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.io.AtomicFiles;
import dev.athanor.io.FileProblems;
import dev.athanor.io.safetensors.SafetensorsWriter;
import dev.athanor.memory.Tier;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.nn.TensorParallel;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParamSpec;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.train.AdamW;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeRuntime;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Writes checkpoints of a {@link Trainer} into a directory, keeps the newest K, and finds the newest valid
 * one to resume from.
 *
 * <p><b>Layout.</b> {@code DIR/step-00000120/} holds {@code model.safetensors} (FP32 master weights by
 * Hugging Face name), {@code optimizer.safetensors} ({@code m.<name>}, {@code v.<name>}) and {@code
 * manifest.json} (format version, library version, run id, the next step, AdamW's step, the model and training
 * configs, the data loader's state, each file's size and CRC32C, and the manifest's own CRC32C): format version 2. A
 * manager of a multi-process run ({@link RankGroup}) writes format version 3 instead: every rank writes its part into
 * {@code rank-<r>-of-<N>.safetensors} and rank 0 the manifest of global tensors and pieces ({@code Shards}), in a
 * temporary directory shared by the ranks, committed after a barrier (see {@link #save}); a pipeline stage's ranks write
 * its tensors only, a tensor-parallel rank its slices of the split tensors (and its cut of the replicated ones; under ZeRO
 * 1 or 2 the part of them in its optimizer's shard, {@code ShardSlices}), and the
 * manifest lists the whole model's global tensors. Either format resumes with any process count, pipeline stages,
 * tensor-parallel ranks and ZeRO stage. ({@link #contribute} serves a caller that writes the single-process format from
 * rank 0 of a run that gathers there: the moments of a ZeRO 1 run.)
 *
 * <p><b>Runs.</b> Every checkpoint records the id of the run that wrote it ({@link #newRunId()} for a new run; a
 * resumed run keeps the id of the checkpoint it resumed from). A manager only ever deletes (rotates away or
 * replaces) its own run's checkpoints; {@link #runs(Path)} tells which runs a directory holds, so that a caller can
 * refuse to mix two runs in one directory.
 *
 * <p><b>Atomic.</b> A checkpoint is written into {@code DIR/.tmp-step-…}, every file and the directory are
 * fsynced, then it is renamed to {@code step-…} and DIR is fsynced. A crash at any moment leaves either the
 * old set of checkpoints or the new one; a leftover {@code .tmp-*} directory is never loaded and is removed
 * by the next manager on that directory.
 *
 * <p><b>Asynchronous.</b> {@link #save(Trainer)} copies the state into host memory (the only part the step
 * loop waits for) and hands the copy to one background writer thread. At most one write is in flight: the
 * next save first waits for the previous write (back-pressure instead of unbounded memory), and a failed
 * write is reported by the next call. The host buffers of a snapshot are kept after its write and refilled
 * by the next save (first-touching fresh memory costs more than the copy), so a manager holds one
 * checkpoint's worth of host memory from its first save until {@link #close()}. A rank of a multi-process run copies
 * only the pieces it writes (its part of the state) and its writer thread writes its rank file; since MPI calls are
 * serialized (the barrier cannot run on the writer thread beside the step's collectives), the set is committed on the
 * step loop's thread by the next collective of the manager (the next save, or {@link #awaitWrite()} after the last): each
 * rank waits for its own write, a barrier, then rank 0 writes the manifest and renames the directory. So a step's
 * checkpoint becomes visible only once every rank's file is durable, and a crash before leaves a {@code .tmp-*}
 * directory. {@link #close()} runs no collective: with a write in flight (the loop ended by an error) rank 0 commits it
 * if every rank's record of a durable file appears, else leaves it a temporary.
 *
 * <p><b>History.</b> Every write, successful or not, is recorded as a {@link CheckpointEvent} (step, directory,
 * the loop's stall, the write's duration, bytes, failure): {@link #events()}.
 */
public final class CheckpointManager implements AutoCloseable {
  private static final Pattern STEP_DIR = Pattern.compile("step-(\\d{8,})");
  private final Path dir;
  private final int keep;
  private final String runId;
  private final boolean async;
  private final RankGroup ranks;  // null: a single process
  private final ExecutorService writer;
  private Future<Path> inFlight;
  private Pending pending;  // a multi-process save whose rank files are being written, committed by the next collective
  private volatile ShardSnapshot shardSpare;  // the host buffers of this rank's last written pieces
  private volatile double writeSeconds;  // how long this rank's last background write of its file took
  private volatile Snapshot spare;  // the host buffers of the last written snapshot, reused by the next save
  private volatile Path lastWritten;
  private final List<CheckpointEvent> events = new java.util.concurrent.CopyOnWriteArrayList<>();

  /** A manager of a new run (a fresh {@link #newRunId()}) writing into {@code dir}; see the other constructor. */
  public CheckpointManager(Path dir, int keep, boolean async) {
    this(dir, keep, async, newRunId());
  }

  /**
   * A manager writing checkpoints of run {@code runId} into {@code dir} (created if needed), keeping the newest
   * {@code keep} of that run's checkpoints. To continue a run, pass the {@link Checkpoint#runId()} it resumes from.
   */
  public CheckpointManager(Path dir, int keep, boolean async, String runId) {
    this(dir, keep, async, runId, null);
  }

  /**
   * A manager of one rank of a multi-process run ({@code ranks}; null: a single process), writing format version 3:
   * every rank constructs one and calls {@link #save} at the same steps (a collective), and {@link #awaitWrite()} at the
   * same point after the last. Asynchronous: each rank writes its file in the background, and the checkpoint is committed
   * (made visible) by the next of these collectives, once every rank's file is durable.
   */
  public CheckpointManager(Path dir, int keep, boolean async, String runId, RankGroup ranks) {
    if (keep < 1) throw new IllegalArgumentException("keep must be >= 1, got " + keep);
    if (runId == null || runId.isBlank()) throw new IllegalArgumentException("a run id is required");
    this.dir = dir;
    this.runId = runId;
    this.keep = keep;
    this.ranks = ranks;
    this.async = async;
    boolean lead = ranks == null || ranks.rank() == 0;
    try {
      Files.createDirectories(dir);
    } catch (IOException e) {
      throw new CheckpointException("cannot create the checkpoint directory " + dir + ": " + FileProblems.reason(e), e);
    }
    if (!Files.isWritable(dir)) throw new CheckpointException("the checkpoint directory " + dir + " is not writable");
    Path probe = dir.resolve(".write-probe-" + ProcessHandle.current().pid() + (lead ? "" : "-rank-" + ranks.rank()));
    try {
      Files.writeString(probe, "probe");
      Files.delete(probe);
    } catch (IOException e) {
      throw new CheckpointException("cannot write into the checkpoint directory " + dir + ": " + FileProblems.reason(e), e);
    }
    if (lead) removeStaleTemporaries();  // rank 0 alone: the others may already be writing into theirs
    this.writer = this.async ? Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "athanor-checkpoint-writer");
      t.setDaemon(false);  // a write in progress keeps the JVM alive until it is done
      return t;
    }) : null;
  }

  public Path directory() {
    return dir;
  }

  /** The id of the run whose checkpoints this manager writes. */
  public String runId() {
    return runId;
  }

  /** A new run id: the UTC start time and 24 random bits, e.g. {@code 20260301-142501-3fa9c2}. */
  public static String newRunId() {
    String time = DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss").withZone(ZoneOffset.UTC).format(Instant.now());
    return time + "-" + String.format("%06x", ThreadLocalRandom.current().nextInt(1 << 24));
  }

  /**
   * Allocates (and touches) the host buffers of the first snapshot on the writer thread while training
   * runs, so that the first {@link #save} only pays for the copy. A no-op when synchronous or already done.
   */
  public void prepare(Trainer t) {
    if (!async || ranks != null || spare != null || inFlight != null) return;
    List<ParameterStore.Param> ps = t.model().parameters().list();
    // moments that live on DISK are snapshot on DISK: host memory stays bounded by one tensor
    Tier mTier = t.optimizer().onDisk(Role.ADAM_M) ? Tier.DISK : Tier.HOST;
    Tier vTier = t.optimizer().onDisk(Role.ADAM_V) ? Tier.DISK : Tier.HOST;
    Tier pTier = t.model().parameters().isPaged(Role.MASTER) ? Tier.DISK : Tier.HOST;  // weights offloaded: the same
    inFlight = writer.submit(() -> {
      Snapshot s = new Snapshot();
      try {
        for (ParameterStore.Param p : ps) {
          long[] shape = p.spec().shape();
          s.params.put(p.name(), Tensor.zeros(p.master().dtype(), Device.CPU, pTier, shape).detach());
          s.moments.put("m." + p.name(), Tensor.zeros(DType.F32, Device.CPU, mTier, shape).detach());
          s.moments.put("v." + p.name(), Tensor.zeros(DType.F32, Device.CPU, vTier, shape).detach());
        }
      } catch (RuntimeException e) {
        s.close();
        return lastWritten;  // the first save allocates instead
      }
      spare = s;
      return lastWritten;
    });
  }

  /**
   * Snapshots the trainer's consistent state (see {@link Trainer#consistentState()}) and writes it, in the
   * background when asynchronous. Returns the seconds the caller spent (waiting for a previous write plus
   * the snapshot; plus the write when synchronous). Throws when the trainer's state is inconsistent or a
   * previous asynchronous write failed. With a {@link RankGroup}, a collective of every rank, synchronous (see
   * {@code saveSharded}).
   */
  public double save(Trainer t) {
    if (ranks != null) return saveSharded(t);
    long t0 = System.nanoTime();
    awaitWrite();
    Trainer.Position pos = t.consistentState().orElseThrow(() -> new CheckpointException(
        "the trainer's state is inconsistent (a step failed during its parameter update); no checkpoint written"));
    Snapshot s = spare != null ? spare : new Snapshot();
    spare = null;
    try {
      s.fill(t, pos);
    } catch (RuntimeException e) {
      s.close();
      throw e;
    }
    if (async) {
      double stall = (System.nanoTime() - t0) / 1e9;  // the loop waits for nothing more than this
      inFlight = writer.submit(() -> {
        try {
          return write(s, t0, stall);
        } finally {
          spare = s;  // the next save reuses its host buffers
        }
      });
    } else {
      try {
        write(s, t0, Double.NaN);
      } finally {
        spare = s;
      }
    }
    return (System.nanoTime() - t0) / 1e9;
  }

  /**
   * The part of a {@link #save} that a replica other than 0 takes in a data-parallel run whose optimizer is sharded
   * (ZeRO 1): it sends its moments to replica 0, which writes them (a collective: call it whenever replica 0's manager
   * saves). Nothing when the optimizer is not sharded (replica 0 then holds every moment itself).
   */
  public static void contribute(Trainer t) {
    if (t.optimizer().shard() == null) return;
    int n = t.model().parameters().list().size();
    for (int i = 0; i < n; i++) t.gatherMoments(i, null, null);
  }

  /**
   * Waits for the write in flight (if any); returns the directory it wrote; rethrows its failure. With a {@link
   * RankGroup} a collective that also commits the checkpoint in flight (every rank calls it at the same point).
   */
  public Optional<Path> awaitWrite() {
    if (ranks != null) {
      completeSharded(null);
      return Optional.ofNullable(lastWritten);
    }
    Future<Path> f = inFlight;
    inFlight = null;
    if (f == null) return Optional.ofNullable(lastWritten);
    return Optional.ofNullable(awaitFuture(f));
  }

  /** The result of a write; rethrows its failure as a {@link CheckpointException}. */
  private static Path awaitFuture(Future<Path> f) {
    try {
      return f.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new CheckpointException("interrupted while waiting for a checkpoint write", e);
    } catch (ExecutionException e) {
      Throwable c = e.getCause();
      if (c instanceof CheckpointException ce) throw ce;
      throw new CheckpointException("checkpoint write failed: " + c, c);
    }
  }

  /**
   * Every save of this manager so far, oldest first, once its write has finished (an asynchronous write in flight
   * appears after {@link #awaitWrite()}).
   */
  public List<CheckpointEvent> events() {
    return List.copyOf(events);
  }

  /** The newest checkpoint written by this manager, if any completed. */
  public Optional<Path> lastWritten() {
    return Optional.ofNullable(lastWritten);
  }

  /**
   * Writes the snapshot and records the event; {@code stall} is the loop's wait in {@link #save} when asynchronous,
   * NaN when synchronous (the loop then waits for the whole save, from {@code saveStart} to the end of the write).
   */
  private Path write(Snapshot s, long saveStart, double stall) {
    long t0 = System.nanoTime();
    String name = String.format("step-%08d", s.pos.nextStep());
    Path target = dir.resolve(name);
    try {
      Path written = write(s, target);
      events.add(event(s, written, saveStart, t0, stall, bytes(written), null));
      return written;
    } catch (RuntimeException e) {
      events.add(event(s, target, saveStart, t0, stall, 0, e.getMessage()));
      throw e;
    }
  }

  private static CheckpointEvent event(Snapshot s, Path dir, long saveStart, long writeStart, double stall, long bytes,
      String failure) {
    long end = System.nanoTime();
    return new CheckpointEvent(s.pos.nextStep(), dir, Double.isNaN(stall) ? (end - saveStart) / 1e9 : stall,
        (end - writeStart) / 1e9, bytes, failure);
  }

  private static long bytes(Path checkpoint) {
    long n = 0;
    try (var files = Files.list(checkpoint)) {
      for (Path f : files.toList()) {
        try {
          n += Files.size(f);
        } catch (IOException e) {
          // unreadable: count what is there
        }
      }
    } catch (IOException e) {
      // unlistable: nothing counted
    }
    return n;
  }

  private Path write(Snapshot s, Path target) {
    String name = target.getFileName().toString();
    Path tmp = dir.resolve(".tmp-" + name + "-" + ProcessHandle.current().pid() + "-" + System.nanoTime());
    try {
      Files.createDirectory(tmp);
      SafetensorsWriter.write(tmp.resolve(Checkpoint.MODEL_FILE), s.params, Map.of("format", "pt"));
      SafetensorsWriter.write(tmp.resolve(Checkpoint.OPTIMIZER_FILE), s.moments, Map.of("format", "athanor-adamw"));
      JsonObject files = new JsonObject();
      for (String f : List.of(Checkpoint.MODEL_FILE, Checkpoint.OPTIMIZER_FILE)) {
        JsonObject info = new JsonObject();
        info.addProperty("bytes", Files.size(tmp.resolve(f)));
        info.addProperty("crc32c", Checkpoint.crc32c(tmp.resolve(f)));
        files.add(f, info);
      }
      JsonObject m = manifest(s.pos, s.adamStep, s.modelConfig, s.trainConfig, Checkpoint.SINGLE_PROCESS_FORMAT_VERSION);
      m.add("files", files);
      return commit(tmp, target, m);
    } catch (IOException | RuntimeException e) {
      try {
        AtomicFiles.deleteTree(tmp);
      } catch (IOException ignored) {
        // best effort; a leftover temporary is removed by the next manager
      }
      String why = e instanceof IOException io ? FileProblems.reason(io) : String.valueOf(e.getMessage());
      throw new CheckpointException("writing checkpoint " + target + " failed: " + why, e);
    }
  }

  /** The manifest's members that every format version shares (no files, no checksum yet). */
  private JsonObject manifest(Trainer.Position pos, long adamStep, dev.athanor.nn.ModelConfig modelConfig,
      dev.athanor.train.TrainConfig trainConfig, int version) {
    JsonObject m = new JsonObject();
    m.addProperty("format", "athanor-checkpoint");
    m.addProperty("format_version", version);
    m.addProperty("library_version", NativeRuntime.version());
    m.addProperty("run_id", runId);
    m.addProperty("created", Instant.now().toString());
    m.addProperty("step", pos.nextStep());
    m.addProperty("adam_step", adamStep);
    m.add("model_config", JsonParser.parseString(HfConfig.toJson(modelConfig)));
    m.add("train_config", Manifests.trainConfig(trainConfig));
    m.add("data_loader", Manifests.loaderState(pos.loader()));
    JsonObject rng = new JsonObject();
    rng.addProperty("note", "training draws no random numbers after initialization; shuffling is a pure function of "
        + "(seed, epoch), saved in data_loader");
    rng.addProperty("seed", trainConfig.seed());
    m.add("rng", rng);
    return m;
  }

  /**
   * Completes checkpoint {@code tmp} with manifest {@code m} (checksummed here), written last, and renames it to
   * {@code target}; then rotates.
   */
  private Path commit(Path tmp, Path target, JsonObject m) throws IOException {
    Gson pretty = new GsonBuilder().setPrettyPrinting().serializeNulls().create();  // null = no BOS/EOS id
    // checksummed as it will be read back (numbers as written)
    m.addProperty(Manifests.CHECKSUM, Manifests.checksum(JsonParser.parseString(pretty.toJson(m)).getAsJsonObject()));
    AtomicFiles.writeString(tmp.resolve(Checkpoint.MANIFEST), pretty.toJson(m));
    AtomicFiles.forceDirectory(tmp);
    crashPointForTests();
    if (Files.exists(target)) {
      // The same step saved again (on exit right after a periodic save, or right after resuming from it). A
      // valid copy of the same state stays: deleting it first would open a window in which a crash loses it.
      if (holdsSameState(target, m)) {
        AtomicFiles.deleteTree(tmp);
        lastWritten = target;
        rotate(target);
        return target;
      }
      String owner = runIdOf(target);
      if (owner != null && !owner.equals(runId)) {
        throw new CheckpointException(target + " holds a checkpoint of another run (" + owner + "), which this run ("
            + runId + ") does not replace; move it away");
      }
      AtomicFiles.deleteTree(target);  // this run's state at this step, but corrupted or different; or unidentifiable
    }
    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
    AtomicFiles.forceDirectory(dir);
    lastWritten = target;
    rotate(target);
    return target;
  }

  /**
   * A multi-process save (format version 3), on every rank at the same step: each rank writes its file into a temporary
   * directory shared by the ranks, and rank 0, once every rank's file is durable (a barrier), writes the manifest last and
   * renames the directory (a crash before leaves only a {@code .tmp-*} directory, never loaded). Synchronous: all of it in
   * this call ({@code saveShardedNow}). Asynchronous ({@code saveShardedInBackground}): each rank copies its pieces into
   * host buffers and its writer thread writes its file; the barrier and the commit happen on this (the step loop's)
   * thread at the next save or {@link #awaitWrite()}, because MPI serializes its calls (a barrier on the writer thread
   * would hold the step's collectives). A rank that fails here ends the job (its error aborts the others), so no rank
   * waits at a barrier for it.
   */
  private double saveSharded(Trainer t) {
    return async ? saveShardedInBackground(t) : saveShardedNow(t);
  }

  private double saveShardedNow(Trainer t) {
    long t0 = System.nanoTime();
    Trainer.Position pos = t.consistentState().orElseThrow(() -> new CheckpointException(
        "the trainer's state is inconsistent (a step failed during its parameter update); no checkpoint written"));
    Path target = dir.resolve(stepName(pos)), tmp = shardedTemporary(pos);
    boolean lead = ranks.rank() == 0;
    try {
      if (lead) createTemporary(tmp);
      ranks.barrier().run();
      List<Shards.GlobalTensor> tensors = globalTensors(t.model());
      RankState mine = rankState(t, tensors);
      writeRankFile(tmp, tensors, mine.parts(), mine.views());
      ranks.barrier().run();
      if (!lead) {
        lastWritten = target;
        return (System.nanoTime() - t0) / 1e9;
      }
      long w0 = System.nanoTime();
      Path written = commitSharded(new Pending(tmp, target, pos, t.optimizer().step(), t.model().config(), t.config(), tensors,
          Double.NaN, null));
      events.add(new CheckpointEvent(pos.nextStep(), written, (System.nanoTime() - t0) / 1e9, (System.nanoTime() - w0) / 1e9,
          bytes(written), null));
      return (System.nanoTime() - t0) / 1e9;
    } catch (IOException | RuntimeException e) {
      throw shardFailure(e, lead, tmp, target);
    }
  }

  /**
   * The asynchronous multi-process save: first completes the previous one ({@link #completeSharded}: this rank's write
   * done, a barrier, rank 0 commits it; the barrier also orders rank 0's creation of this save's temporary directory
   * before any rank writes into it), then copies this rank's pieces into host buffers (reused from the previous save)
   * and hands them to the writer thread, which writes the rank file and its record. Returns the seconds the loop spent.
   */
  private double saveShardedInBackground(Trainer t) {
    long t0 = System.nanoTime();
    Trainer.Position pos = t.consistentState().orElseThrow(() -> new CheckpointException(
        "the trainer's state is inconsistent (a step failed during its parameter update); no checkpoint written"));
    if (pending != null && pending.pos().nextStep() == pos.nextStep()) {
      // the same step again (the final save right after a periodic one): its write in flight holds this state
      completeSharded(null);
      return (System.nanoTime() - t0) / 1e9;
    }
    Path target = dir.resolve(stepName(pos)), tmp = shardedTemporary(pos);
    boolean lead = ranks.rank() == 0;
    completeSharded(tmp);
    ShardSnapshot s = shardSpare != null ? shardSpare : new ShardSnapshot();
    shardSpare = null;
    List<Shards.GlobalTensor> tensors;
    List<Shards.Part> parts;
    try {
      tensors = globalTensors(t.model());
      RankState mine = rankState(t, tensors);
      parts = mine.parts();
      s.fill(tensors, parts, mine.views());
    } catch (RuntimeException e) {
      s.close();
      throw shardFailure(e, lead, tmp, target);
    }
    double stall = (System.nanoTime() - t0) / 1e9;  // the loop waits for nothing more than this
    Future<Path> write = writer.submit(() -> {
      long w0 = System.nanoTime();
      try {
        writeRankFile(tmp, tensors, parts, s.views());
        return target;
      } catch (IOException | RuntimeException e) {
        throw shardFailure(e, false, tmp, target);
      } finally {
        writeSeconds = (System.nanoTime() - w0) / 1e9;
        shardSpare = s;  // the next save reuses its host buffers
      }
    });
    pending = new Pending(tmp, target, pos, t.optimizer().step(), t.model().config(), t.config(), tensors, stall, write);
    return stall;
  }

  /**
   * Completes the multi-process save in flight, if any (a collective: every rank calls it at the same point): waits for
   * this rank's write, then (after rank 0 created {@code next}, the next save's temporary directory, when not null: the
   * same on every rank) a barrier, after which every rank's file is durable and rank 0 writes the manifest and renames the directory. Rethrows
   * this rank's write failure (which ends the job).
   */
  private void completeSharded(Path next) {
    Pending p = pending;
    pending = null;
    boolean lead = ranks.rank() == 0;
    Path target = p != null ? p.target() : next;
    try {
      if (p != null) awaitFuture(p.write());
      if (next != null && lead) createTemporary(next);
      if (p == null && next == null) return;
      ranks.barrier().run();
      if (p == null) return;
      if (!lead) {
        lastWritten = p.target();
        return;
      }
      long c0 = System.nanoTime();
      Path written = commitSharded(p);
      double seconds = writeSeconds + (System.nanoTime() - c0) / 1e9;  // this rank's write and the commit
      events.add(new CheckpointEvent(p.pos().nextStep(), written, p.stall(), seconds, bytes(written), null));
    } catch (IOException | RuntimeException e) {
      if (p != null && lead) events.add(new CheckpointEvent(p.pos().nextStep(), p.target(), p.stall(), writeSeconds, 0,
          e.getMessage()));
      throw shardFailure(e, lead, p != null ? p.tmp() : next, target);
    }
  }

  /**
   * At {@link #close()} with a multi-process write still in flight (the loop ended by an error, where no collective can
   * run): waits for this rank's write; rank 0 then commits the checkpoint if every rank's record appears in the
   * temporary directory within {@link #CLOSE_WAIT_SECONDS} (a record is written only after its rank file is durable, so
   * the set is complete), else leaves it there (never loaded; the next manager removes it).
   */
  private void abandonSharded() {
    Pending p = pending;
    pending = null;
    if (p == null) return;
    try {
      awaitFuture(p.write());
    } catch (RuntimeException e) {
      return;  // this rank's part is missing: the checkpoint stays a temporary
    }
    if (ranks.rank() != 0) return;
    long deadline = System.nanoTime() + (long) (CLOSE_WAIT_SECONDS * 1e9);
    try {
      while (!allRecords(p.tmp())) {
        if (System.nanoTime() > deadline) return;
        Thread.sleep(20);
      }
      long c0 = System.nanoTime();
      Path written = commitSharded(p);
      events.add(new CheckpointEvent(p.pos().nextStep(), written, p.stall(), writeSeconds + (System.nanoTime() - c0) / 1e9,
          bytes(written), null));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException | RuntimeException e) {
      events.add(new CheckpointEvent(p.pos().nextStep(), p.target(), p.stall(), writeSeconds, 0, e.getMessage()));
    }
  }

  /** How long {@link #close()} waits for the other ranks' records of a checkpoint in flight before leaving it uncommitted. */
  static final double CLOSE_WAIT_SECONDS = 60;

  private boolean allRecords(Path tmp) {
    for (int r = 0; r < ranks.size(); r++) {
      if (!Files.isRegularFile(tmp.resolve(Shards.fileName(r, ranks.size()) + PIECES_SUFFIX))) return false;
    }
    return true;
  }

  /**
   * A multi-process save whose rank files are being written: where, the state it holds (captured at the save) and this
   * rank's write ({@code stall}: the loop's wait in the save; {@code write}: null when synchronous).
   */
  private record Pending(Path tmp, Path target, Trainer.Position pos, long adamStep, ModelConfig modelConfig,
      dev.athanor.train.TrainConfig trainConfig, List<Shards.GlobalTensor> tensors, double stall, Future<Path> write) {}

  private static String stepName(Trainer.Position pos) {
    return String.format("step-%08d", pos.nextStep());
  }

  /** The temporary directory of a multi-process save: the same name on every rank. */
  private Path shardedTemporary(Trainer.Position pos) {
    return dir.resolve(".tmp-" + stepName(pos) + "-of-" + ranks.size());
  }

  /** Rank 0: a fresh temporary directory (one left by a crashed attempt of this run at this step is removed). */
  private static void createTemporary(Path tmp) throws IOException {
    if (Files.exists(tmp)) AtomicFiles.deleteTree(tmp);
    Files.createDirectory(tmp);
  }

  /** This rank's file (atomically, fsynced), then the record of its pieces, which rank 0 moves into the manifest. */
  private void writeRankFile(Path tmp, List<Shards.GlobalTensor> tensors, List<Shards.Part> parts, Shards.Views state)
      throws IOException {
    String file = Shards.fileName(ranks.rank(), ranks.size());
    List<Shards.Piece> pieces = Shards.write(tmp.resolve(file), tensors, parts, state);
    pauseForTests(tmp);
    JsonObject info = new JsonObject();
    info.addProperty("bytes", Files.size(tmp.resolve(file)));
    info.addProperty("crc32c", Checkpoint.crc32c(tmp.resolve(file)));
    info.add("pieces", Shards.piecesJson(pieces));
    AtomicFiles.writeString(tmp.resolve(file + PIECES_SUFFIX), new Gson().toJson(info));
  }

  /**
   * Rank 0, once every rank's file and record are in {@code p}'s temporary directory: gathers the records into the
   * manifest, writes it last and renames the directory ({@link #commit}).
   */
  private Path commitSharded(Pending p) throws IOException {
    JsonObject files = new JsonObject();
    for (int r = 0; r < ranks.size(); r++) {
      String f = Shards.fileName(r, ranks.size());
      Path record = p.tmp().resolve(f + PIECES_SUFFIX);
      if (!Files.isRegularFile(p.tmp().resolve(f)) || !Files.isRegularFile(record)) {
        throw new CheckpointException("rank " + r + " wrote no " + f + " (or its record) into " + p.tmp()
            + ": is " + dir + " one directory shared by every rank?");
      }
      files.add(f, JsonParser.parseString(Files.readString(record)).getAsJsonObject());
      Files.delete(record);
    }
    JsonObject m = manifest(p.pos(), p.adamStep(), p.modelConfig(), p.trainConfig(), Checkpoint.FORMAT_VERSION);
    JsonObject layout = new JsonObject();
    layout.addProperty("world_size", ranks.size());
    layout.addProperty("dp", ranks.dp());
    layout.addProperty("zero", ranks.zero());
    layout.addProperty("tp", ranks.tp());
    layout.addProperty("pp", ranks.pp());
    m.add("layout", layout);
    m.add("tensors", Shards.tensorsJson(p.tensors()));
    m.add("files", files);
    return commit(p.tmp(), p.target(), m);
  }

  /** A multi-process save's failure as the exception to throw; rank 0 ({@code lead}) removes the temporary directory. */
  private CheckpointException shardFailure(Exception e, boolean lead, Path tmp, Path target) {
    if (lead && tmp != null) {
      try {
        AtomicFiles.deleteTree(tmp);
      } catch (IOException ignored) {
        // best effort; a leftover temporary is removed by the next manager
      }
    }
    if (e instanceof CheckpointException ce && ce.getMessage().startsWith("writing rank ")) return ce;
    String why = e instanceof IOException io ? FileProblems.reason(io) : String.valueOf(e.getMessage());
    return new CheckpointException("writing rank " + ranks.rank() + "'s part of checkpoint " + target + " failed: " + why, e);
  }

  /**
   * Test hook: -Dathanor.checkpoint.pauseAfterRankFile=STEP makes a rank's write of the checkpoint of step STEP sleep
   * (up to 10 minutes) after its rank file is written and before its record, so a test can kill the job in the middle.
   */
  private static void pauseForTests(Path tmp) {
    String step = System.getProperty("athanor.checkpoint.pauseAfterRankFile");
    if (step == null || !tmp.getFileName().toString().startsWith(".tmp-step-" + String.format("%08d", Long.parseLong(step)))) {
      return;
    }
    try {
      Thread.sleep(600_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** What a rank file records about itself until rank 0 moves it into the manifest. */
  private static final String PIECES_SUFFIX = ".pieces.json";

  /** The parameters as the manifest's global tensors. */
  static List<Shards.GlobalTensor> globalTensors(ParameterStore store) {
    List<Shards.GlobalTensor> l = new ArrayList<>();
    for (int i = 0; i < store.size(); i++) {
      ParameterStore.Param p = store.list().get(i);
      l.add(new Shards.GlobalTensor(p.name(), Role.MASTER.dtype(store.computeDtype()), p.spec().shape(), store.range(i).start()));
    }
    return l;
  }

  /**
   * The manifest's global tensors for {@code model}: its own parameters when it is the whole model; for a pipeline
   * stage or a tensor-parallel rank, every parameter of the whole model as one process lays it out (names, shapes, flat
   * offsets; the tied embedding once), so that any layout, one process included, reads the checkpoint.
   */
  static List<Shards.GlobalTensor> globalTensors(Transformer model) {
    ModelConfig cfg = model.config();
    if (model.stage().equals(Stage.whole(cfg)) && !model.tensorParallel().split()) return globalTensors(model.parameters());
    List<Shards.GlobalTensor> l = new ArrayList<>();
    long at = 0;
    for (List<ParamSpec> unit : cfg.parameterUnits(Stage.whole(cfg)).values()) {
      for (ParamSpec s : unit) {
        l.add(new Shards.GlobalTensor(s.name(), DType.F32, s.shape(), at));
        at += ParameterStore.layoutNumel(List.of(s));
      }
    }
    return l;
  }

  /**
   * For each of {@code tensors}, the index of the parameter of {@code model} that holds it, or -1 when this process
   * does not write it (another pipeline stage's; or the last stage's copy of a tied embedding, which the first stage
   * writes).
   */
  private static int[] localIndices(Transformer model, List<Shards.GlobalTensor> tensors) {
    ParameterStore store = model.parameters();
    int[] local = new int[tensors.size()];
    for (int i = 0; i < tensors.size(); i++) {
      String name = tensors.get(i).name();
      local[i] = store.contains(name) && !tiedCopy(model, name) ? store.indexOf(name) : -1;
    }
    return local;
  }

  /** Whether parameter {@code name} of {@code model} is a pipeline's last stage's copy of the first stage's tied embedding. */
  private static boolean tiedCopy(Transformer model, String name) {
    Stage s = model.stage();
    return s.head() && !s.embedding() && model.config().tiedEmbeddings() && name.equals(model.config().embeddingName());
  }

  /** The parts of the global tensors this rank writes, and the views of its state they are copied from. */
  private record RankState(List<Shards.Part> parts, Shards.Views views) {}

  /**
   * What this rank writes of {@code tensors}, as its layout cuts the state: without tensor parallelism, its ZeRO shard
   * or its replica's cut of its store ({@link #parts}); a tensor-parallel rank under ZeRO 1 or 2, its shard of its part
   * ({@link #zeroTensorParallelParts}); else its slices ({@link #tensorParallelParts}).
   */
  private RankState rankState(Trainer t, List<Shards.GlobalTensor> tensors) {
    int[] local = localIndices(t.model(), tensors);
    TensorParallel tp = t.model().tensorParallel();
    if (!tp.split()) return new RankState(parts(t, tensors, local), views(t, local));
    if (tp.size() != ranks.tp() || tp.rank() != ranks.tpRank()) {
      throw new CheckpointException("the model is tensor-parallel rank " + tp.rank() + " of " + tp.size() + ", the rank group "
          + "says rank " + ranks.tpRank() + " of " + ranks.tp());
    }
    if (t.optimizer().shard() != null) {
      return new RankState(zeroTensorParallelParts(t, tensors, local), zeroTensorParallelViews(t, tensors, local));
    }
    return new RankState(tensorParallelParts(t, tensors, local), tensorParallelViews(t, local));
  }

  /**
   * The parts of the global tensors this rank writes: of each parameter it writes ({@code local}), the elements in its
   * optimizer's ZeRO shard, or else in its replica's cut of its store ({@link RankGroup#part}).
   */
  private List<Shards.Part> parts(Trainer t, List<Shards.GlobalTensor> tensors, int[] local) {
    ParameterStore store = t.model().parameters();
    Range owned = t.optimizer().shard() != null ? t.optimizer().shard() : ranks.part(store.numel());
    List<Shards.Part> parts = new ArrayList<>();
    for (int i = 0; i < tensors.size(); i++) {
      if (local[i] < 0) continue;
      Range r = store.range(local[i]), mine = r.intersect(owned);
      if (!mine.isEmpty()) parts.add(new Shards.Part(i, mine.start() - r.start(), mine.end() - r.start()));
    }
    return parts;
  }

  /**
   * The parts of the global tensors a tensor-parallel rank writes, as {@link TensorParallel#split} cuts each parameter it
   * writes ({@code local}): of a split tensor, its slices ({@link TensorParallel#slices}), each cut along the same dim
   * between the data-parallel replicas (so every piece is a whole slice, a strided view of its tensor); of a replicated
   * tensor, its cut of the flat elements between the stage's dp × tp ranks. Every element is written once.
   */
  private List<Shards.Part> tensorParallelParts(Trainer t, List<Shards.GlobalTensor> tensors, int[] local) {
    TensorParallel tp = t.model().tensorParallel();
    int writers = ranks.dp() * tp.size(), me = ranks.replica() * tp.size() + tp.rank();
    List<Shards.Part> parts = new ArrayList<>();
    for (int i = 0; i < tensors.size(); i++) {
      if (local[i] < 0) continue;
      Shards.GlobalTensor g = tensors.get(i);
      TensorParallel.Split split = TensorParallel.split(t.model().config(), g.name());
      if (split.replicated()) {
        Range r = RankGroup.cut(g.numel(), me, writers);
        if (!r.isEmpty()) parts.add(new Shards.Part(i, r.start(), r.end()));
        continue;
      }
      for (long[] s : tp.slices(split, g.shape())) {
        Range r = RankGroup.cut(s[1] - s[0], ranks.replica(), ranks.dp());
        if (r.isEmpty()) continue;
        Shards.Slice slice = new Shards.Slice(split.dim(), s[0] + r.start(), s[0] + r.end());
        parts.add(new Shards.Part(i, slice, 0, slice.numel(g.shape())));
      }
    }
    return parts;
  }

  /**
   * The parts of the global tensors a tensor-parallel rank writes under ZeRO 1 or 2: of each parameter it writes ({@code
   * local}), the elements of its local tensor in its optimizer's shard, as {@link ShardSlices#parts} places them in the
   * global tensor (masters and moments alike: every rank of a dp group holds the whole masters of its part). The ranks of
   * one dp group cut their common part between them; the tp groups' replicated tensors are cut between the tp ranks.
   */
  private static List<Shards.Part> zeroTensorParallelParts(Trainer t, List<Shards.GlobalTensor> tensors, int[] local) {
    ParameterStore store = t.model().parameters();
    TensorParallel tp = t.model().tensorParallel();
    Range shard = t.optimizer().shard();
    List<Shards.Part> parts = new ArrayList<>();
    for (int i = 0; i < tensors.size(); i++) {
      if (local[i] < 0) continue;
      Range r = store.range(local[i]), mine = r.intersect(shard);
      if (mine.isEmpty()) continue;
      Shards.GlobalTensor g = tensors.get(i);
      parts.addAll(ShardSlices.parts(i, g.shape(), tp, TensorParallel.split(t.model().config(), g.name()),
          mine.start() - r.start(), mine.end() - r.start()));
    }
    return parts;
  }

  /**
   * A tensor-parallel rank's masters and its optimizer shard's moments as {@link Shards.Views} of the parts {@link
   * #zeroTensorParallelParts} lists: each the run of its local tensor that {@link ShardSlices#locate} finds (one row, or a
   * strided view of whole rows).
   */
  private static Shards.Views zeroTensorParallelViews(Trainer t, List<Shards.GlobalTensor> tensors, int[] local) {
    ParameterStore store = t.model().parameters();
    TensorParallel tp = t.model().tensorParallel();
    AdamW opt = t.optimizer();
    return (role, part) -> {
      Shards.GlobalTensor g = tensors.get(part.tensor());
      ShardSlices.Run run = ShardSlices.locate(g.shape(), tp, TensorParallel.split(t.model().config(), g.name()), part);
      long at = store.range(local[part.tensor()]).start();
      Range flat = new Range(at + run.span().start(), at + run.span().end());
      Tensor span = role.equals("master") ? store.slice(Role.MASTER, flat)
          : opt.shardMoments(role.equals("adam_m") ? Role.ADAM_M : Role.ADAM_V, flat);
      return ShardSlices.view(span, run);
    };
  }

  /**
   * A tensor-parallel rank's masters and moments as {@link Shards.Views} of the global tensors ({@code local}: the
   * parameter holding each): a slice of a split tensor is the strided view of the rank's tensor that holds it.
   */
  private static Shards.Views tensorParallelViews(Trainer t, int[] local) {
    TensorParallel tp = t.model().tensorParallel();
    ParameterStore store = t.model().parameters();
    AdamW opt = t.optimizer();
    return (role, part) -> {
      int i = local[part.tensor()];
      Tensor mine = role.equals("master") ? store.list().get(i).master()
          : (role.equals("adam_m") ? opt.firstMoments() : opt.secondMoments()).get(i);
      Shards.Slice s = part.slice();
      if (s.whole()) {
        try (Tensor flat = mine.view(-1)) {
          return flat.slice(0, part.start(), part.end());
        }
      }
      String name = store.list().get(i).name();
      long at = 0;  // where the slice holding s starts in this rank's tensor
      for (long[] held : tp.slices(TensorParallel.split(t.model().config(), name), TensorParallel.wholeShape(t.model().config(), name))) {
        if (held[0] <= s.lo() && s.hi() <= held[1]) return mine.slice(s.dim(), at + s.lo() - held[0], at + s.hi() - held[0]);
        at += held[1] - held[0];
      }
      throw new IllegalStateException(name + s + " is not held by tensor-parallel rank " + tp.rank());
    };
  }

  /**
   * The trainer's masters and moments as {@link Shards.Views} of the global tensors ({@code local}: the parameter holding
   * each; the moments of a sharded optimizer: its shard's only; the masters under ZeRO 3 too, which then are the
   * optimizer's).
   */
  private static Shards.Views views(Trainer t, int[] local) {
    ParameterStore store = t.model().parameters();
    AdamW opt = t.optimizer();
    return (role, part) -> {
      int i = local[part.tensor()];
      long a = part.start(), b = part.end();
      Range flat = new Range(store.range(i).start() + a, store.range(i).start() + b);
      if (role.equals("master")) return opt.holdsMasters() ? opt.shardMasters(flat) : store.slice(Role.MASTER, flat);
      Role r = role.equals("adam_m") ? Role.ADAM_M : Role.ADAM_V;
      if (opt.shard() != null) return opt.shardMoments(r, flat);
      try (Tensor whole = (r == Role.ADAM_M ? opt.firstMoments() : opt.secondMoments()).get(i).view(-1)) {
        return whole.slice(0, a, b);
      }
    };
  }

  /** Test hook: -Dathanor.checkpoint.crashBeforeRename=true halts the JVM after the files are written, before the rename. */
  private static void crashPointForTests() {
    if (Boolean.getBoolean("athanor.checkpoint.crashBeforeRename")) Runtime.getRuntime().halt(137);
  }

  /**
   * Deletes the oldest of this run's checkpoints beyond the newest {@code keep} up to and including {@code written},
   * the one just written. Checkpoints of later steps (left by a run that was resumed from an earlier checkpoint, e.g.
   * because they failed to verify) neither count nor are deleted, so they can never push out the new one; nor do
   * those of other runs, or those whose run cannot be read.
   */
  private void rotate(Path written) throws IOException {
    long newest = stepOf(written);
    List<Path> all = stepDirs(dir).stream().filter(p -> stepOf(p) <= newest && runId.equals(runIdOf(p))).toList();
    for (int i = 0; i < all.size() - keep; i++) AtomicFiles.deleteTree(all.get(i));
  }

  /** Whether {@code existing} verifies and its manifest records the same step, optimizer step, configs and data position as {@code m}. */
  private static boolean holdsSameState(Path existing, JsonObject m) {
    try {
      JsonObject old = Checkpoint.open(existing).manifest();
      // as written and read back (numbers as parsed), so that it compares like old
      JsonObject now = JsonParser.parseString(new GsonBuilder().serializeNulls().create().toJson(m)).getAsJsonObject();
      for (String k : List.of("run_id", "step", "adam_step", "model_config", "train_config", "data_loader")) {
        if (!now.get(k).equals(old.get(k))) return false;
      }
      return true;
    } catch (CheckpointException e) {
      return false;
    }
  }

  private void removeStaleTemporaries() {
    try (var s = Files.list(dir)) {
      for (Path p : s.filter(p -> p.getFileName().toString().startsWith(".tmp-step-")).toList()) AtomicFiles.deleteTree(p);
    } catch (IOException e) {
      throw new CheckpointException("cannot clean up " + dir + ": " + FileProblems.reason(e), e);
    }
  }

  /** The {@code step-*} directories of {@code dir}, oldest step first. */
  public static List<Path> stepDirs(Path dir) throws IOException {
    if (!Files.isDirectory(dir)) return List.of();
    try (var s = Files.list(dir)) {
      return s.filter(p -> STEP_DIR.matcher(p.getFileName().toString()).matches() && Files.isDirectory(p))
          .sorted(Comparator.comparingLong(CheckpointManager::stepOf)).toList();
    }
  }

  private static long stepOf(Path p) {
    Matcher m = STEP_DIR.matcher(p.getFileName().toString());
    return m.matches() ? Long.parseLong(m.group(1)) : -1;
  }

  /**
   * The run id a checkpoint directory's manifest records ({@link Checkpoint#LEGACY_RUN_ID} for format version 1),
   * without verifying anything else; null when the manifest is missing or unreadable.
   */
  static String runIdOf(Path stepDir) {
    JsonObject m = readManifest(stepDir);
    if (m == null) return null;
    try {
      if (m.has("run_id")) return m.get("run_id").getAsString();
      return m.has("format_version") && m.get("format_version").getAsInt() == 1 ? Checkpoint.LEGACY_RUN_ID : null;
    } catch (RuntimeException e) {
      return null;
    }
  }

  /** The parsed manifest of a checkpoint directory, unverified; null when missing or not a JSON object. */
  private static JsonObject readManifest(Path stepDir) {
    Path mf = stepDir.resolve(Checkpoint.MANIFEST);
    if (!Files.isRegularFile(mf)) return null;
    try {
      return JsonParser.parseString(Files.readString(mf)).getAsJsonObject();
    } catch (IOException | RuntimeException e) {
      return null;
    }
  }

  /**
   * The checkpoints of one run in a directory, as {@link #runs(Path)} finds them.
   *
   * @param runId the run's id, or null for checkpoint directories whose manifest is missing or unreadable
   * @param directories its {@code step-*} directories, oldest step first
   * @param firstCreated when the oldest was written, as its manifest says (null when unknown)
   * @param lastCreated when the newest was written (null when unknown)
   */
  public record Run(String runId, List<Path> directories, String firstCreated, String lastCreated) {
    /** E.g. "run 20260301-142501-3fa9c2: steps 2 to 8 (4 checkpoints, written 2026-03-01T14:25:03Z to ...)". */
    public String describe() {
      String steps = directories.size() == 1 ? "step " + stepOf(directories.get(0))
          : "steps " + stepOf(directories.get(0)) + " to " + stepOf(directories.get(directories.size() - 1));
      String count = directories.size() + (directories.size() == 1 ? " checkpoint" : " checkpoints");
      if (runId == null) {
        return "checkpoints of an unknown run (manifest missing or unreadable): " + steps + " (" + count + ")";
      }
      String first = seconds(firstCreated), last = seconds(lastCreated);
      String when = first == null ? "" : first.equals(last) || last == null ? ", written " + first
          : ", written " + first + " to " + last;
      String name = runId.equals(Checkpoint.LEGACY_RUN_ID) ? "a run of an older Athanor (no run id)" : "run " + runId;
      return name + ": " + steps + " (" + count + when + ")";
    }

    /** An ISO-8601 instant to the second (as written: a manifest's "created" is not verified here). */
    private static String seconds(String instant) {
      if (instant == null) return null;
      try {
        return Instant.parse(instant).truncatedTo(java.time.temporal.ChronoUnit.SECONDS).toString();
      } catch (java.time.format.DateTimeParseException e) {
        return instant;
      }
    }
  }

  /**
   * The runs whose checkpoints {@code dir} holds (grouped by the run id in their manifests, unverified), in the order
   * of their oldest checkpoint; empty when {@code dir} holds none or does not exist.
   */
  public static List<Run> runs(Path dir) {
    Map<String, List<Path>> byRun = new LinkedHashMap<>();
    Map<String, List<String>> created = new LinkedHashMap<>();
    List<Path> dirs;
    try {
      dirs = stepDirs(dir);
    } catch (IOException e) {
      throw new CheckpointException("cannot list " + dir + ": " + e.getMessage(), e);
    }
    for (Path p : dirs) {
      JsonObject m = readManifest(p);
      String id = runIdOf(p);
      byRun.computeIfAbsent(id, k -> new ArrayList<>()).add(p);
      String when = null;
      try {
        when = m != null && m.has("created") ? m.get("created").getAsString() : null;
      } catch (RuntimeException e) {
        // not a string: unknown
      }
      if (when != null) created.computeIfAbsent(id, k -> new ArrayList<>()).add(when);
    }
    List<Run> runs = new ArrayList<>();
    for (Map.Entry<String, List<Path>> e : byRun.entrySet()) {
      List<String> times = created.getOrDefault(e.getKey(), List.of()).stream().sorted().toList();
      runs.add(new Run(e.getKey(), List.copyOf(e.getValue()), times.isEmpty() ? null : times.get(0),
          times.isEmpty() ? null : times.get(times.size() - 1)));
    }
    return runs;
  }

  /** Deletes the checkpoint directories of {@code run} (e.g. another run's, when the user asked to overwrite them). */
  public static void delete(Run run) {
    Path parent = null;
    for (Path p : run.directories()) {
      try {
        AtomicFiles.deleteTree(p);
      } catch (IOException e) {
        throw new CheckpointException("cannot delete " + p + ": " + e.getMessage(), e);
      }
      parent = p.getParent();
    }
    if (parent != null) AtomicFiles.forceDirectory(parent);
  }

  /**
   * The newest checkpoint in {@code dir} that verifies; each newer one that does not is reported to
   * {@code warn} with the reason (which names it). Empty when there is none.
   */
  public static Optional<Checkpoint> latestValid(Path dir, Consumer<String> warn) {
    List<Path> dirs;
    try {
      dirs = new ArrayList<>(stepDirs(dir));
    } catch (IOException e) {
      throw new CheckpointException("cannot list " + dir + ": " + FileProblems.reason(e), e);
    }
    for (int i = dirs.size() - 1; i >= 0; i--) {
      try {
        return Optional.of(Checkpoint.open(dirs.get(i)));
      } catch (CheckpointException e) {
        warn.accept(e.getMessage());
      }
    }
    return Optional.empty();
  }

  @Override
  public void close() {
    try {
      if (ranks != null) {
        abandonSharded();  // no collective here: the loop may have ended with an error that the other ranks do not share
      } else {
        awaitWrite();
      }
    } finally {
      if (writer != null) writer.shutdown();
      Snapshot s = spare;
      spare = null;
      if (s != null) s.close();
      ShardSnapshot h = shardSpare;
      shardSpare = null;
      if (h != null) h.close();
    }
  }

  /**
   * Host copies of the pieces one rank writes, taken at a step boundary, by piece key ({@code Shards.Piece#key}), each
   * with the shape of the view it copies. Kept and refilled by the next save, as {@link Snapshot}'s are.
   */
  private static final class ShardSnapshot implements AutoCloseable {
    final Map<String, Tensor> pieces = new LinkedHashMap<>();
    List<Shards.GlobalTensor> tensors = List.of();

    /**
   * Copies {@code parts} of every role from {@code state}, reusing the tensors whose key, shape and dtype match: host
   * tensors, or DISK ones for the pieces that live on DISK.
   */
    void fill(List<Shards.GlobalTensor> tensors, List<Shards.Part> parts, Shards.Views state) {
      Map<String, Tensor> old = new LinkedHashMap<>(pieces);
      pieces.clear();
      this.tensors = tensors;
      try {
        for (String role : Shards.ROLES) {
          for (Shards.Part p : parts) {
            String key = Shards.Piece.key(role, tensors.get(p.tensor()).name(), p.slice(), p.start());
            try (Tensor v = state.view(role, p)) {
              Tensor dst = old.remove(key);
              if (dst != null && (dst.dtype() != v.dtype() || !java.util.Arrays.equals(dst.shape(), v.shape()))) {
                dst.close();
                dst = null;
              }
              // a piece that lives on DISK (a ZeRO shard's moments offloaded) is copied on DISK: host memory stays bounded
              Tier tier = v.tier() == Tier.DISK ? Tier.DISK : Tier.HOST;
              if (dst == null) dst = Tensor.empty(v.dtype(), Device.CPU, tier, v.shape()).detach();
              pieces.put(key, dst);
              dst.copyFrom(v);
            }
          }
        }
      } finally {
        for (Tensor t : old.values()) t.close();  // pieces of another layout: not written again
      }
    }

    /** The copies as {@link Shards.Views} (new references, which the writer closes). */
    Shards.Views views() {
      return (role, part) -> {
        Tensor t = pieces.get(Shards.Piece.key(role, tensors.get(part.tensor()).name(), part.slice(), part.start()));
        if (t == null) throw new IllegalStateException("no host copy of " + role + " of part " + part);
        return t.view(t.shape());
      };
    }

    @Override
    public void close() {
      for (Tensor t : pieces.values()) t.close();
      pieces.clear();
    }
  }

  /**
   * A host copy of everything a checkpoint holds, taken at a step boundary. Its host tensors are kept and
   * refilled by the next save: touching freshly allocated memory costs more than the copy itself.
   */
  private static final class Snapshot implements AutoCloseable {
    final Map<String, Tensor> params = new LinkedHashMap<>(), moments = new LinkedHashMap<>();
    Trainer.Position pos;
    long adamStep;
    dev.athanor.nn.ModelConfig modelConfig;
    dev.athanor.train.TrainConfig trainConfig;

    /** Copies the trainer's state into this snapshot, reusing its host tensors where name, shape and dtype match. */
    void fill(Trainer t, Trainer.Position pos) {
      this.pos = pos;
      this.adamStep = t.optimizer().step();
      this.modelConfig = t.model().config();
      this.trainConfig = t.config();
      List<ParameterStore.Param> ps = t.model().parameters().list();
      if (params.size() != ps.size() || !params.containsKey(ps.get(0).name())) close();  // another model: start over
      if (t.model().tensorParallel().split()) {
        throw new CheckpointException("a tensor-parallel rank's checkpoint is written by every rank (format "
            + Checkpoint.FORMAT_VERSION + "): construct the manager with a RankGroup");
      }
      if (t.optimizer().shard() != null) {  // ZeRO 1: gathered from the replicas one parameter at a time
        for (int i = 0; i < ps.size(); i++) {
          String name = ps.get(i).name();
          refill(params, name, ps.get(i).master());
          long[] shape = ps.get(i).spec().shape();
          try (Tensor m = Tensor.empty(DType.F32, Device.CPU, shape); Tensor v = Tensor.empty(DType.F32, Device.CPU, shape)) {
            t.gatherMoments(i, m, v);
            refill(moments, "m." + name, m);
            refill(moments, "v." + name, v);
          }
        }
        return;
      }
      List<Tensor> m = t.optimizer().firstMoments(), v = t.optimizer().secondMoments();
      for (int i = 0; i < ps.size(); i++) {
        String name = ps.get(i).name();
        refill(params, name, ps.get(i).master());
        refill(moments, "m." + name, m.get(i));
        refill(moments, "v." + name, v.get(i));
      }
    }

    private static void refill(Map<String, Tensor> map, String key, Tensor src) {
      Tensor dst = map.get(key);
      if (dst != null && dst.dtype() == src.dtype() && java.util.Arrays.equals(dst.shape(), src.shape())
          && (dst.tier() == Tier.DISK) == (src.tier() == Tier.DISK)) {
        if (src.tier() == Tier.DISK) {
          diskToDisk(dst, src);
        } else {
          dst.copyFrom(src);
        }
        return;
      }
      if (dst != null) dst.close();
      map.remove(key);
      map.put(key, hostCopy(src));
    }

    /**
     * A copy of {@code t} that a later step cannot change: in host memory, or on DISK for a DISK tensor (moments kept
     * on DISK by the optimizer: copied through a host temporary of one tensor, and written to the checkpoint the same
     * way, so a checkpoint of an offloaded run needs host memory for one tensor, not for the state).
     */
    /** DISK to DISK through a HOST tensor of one parameter, so that the host memory it takes is accounted. */
    private static void diskToDisk(Tensor dst, Tensor src) {
      try (Tensor h = src.to(Tier.HOST)) {
        dst.copyFrom(h);
      }
    }

    private static Tensor hostCopy(Tensor t) {
      if (t.tier() == Tier.DISK) {
        Tensor c = Tensor.empty(t.dtype(), Device.CPU, Tier.DISK, t.shape()).detach();
        try {
          diskToDisk(c, t);
          return c;
        } catch (RuntimeException e) {
          c.close();
          throw e;
        }
      }
      return (t.device().isCpu() ? t.copy() : t.to(Device.CPU)).detach();
    }

    @Override
    public void close() {
      for (Tensor t : params.values()) t.close();
      for (Tensor t : moments.values()) t.close();
      params.clear();
      moments.clear();
    }
  }
}
