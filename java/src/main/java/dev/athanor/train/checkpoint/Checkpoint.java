package dev.athanor.train.checkpoint;

import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.athanor.io.FileProblems;
import dev.athanor.io.JsonErrors;
import dev.athanor.io.data.DataLoader;
import dev.athanor.io.hf.HfConfig;
import dev.athanor.io.safetensors.SafetensorsFile;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.TensorParallel;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.train.AdamW;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32C;

/**
 * A checkpoint directory ({@code step-NNNNNNNN/}) whose manifest and files were verified: the manifest matches
 * its own checksum, every file it lists exists with its recorded size and CRC32C, and the format version is one
 * this library reads. {@link #restore(Trainer)} puts the trainer exactly where the checkpoint was taken.
 *
 * <p>The format does not depend on the layout that wrote it: a data-parallel run with a sharded optimizer (ZeRO 1)
 * gathers every moment into the one file, and restoring into a sharded optimizer keeps the part of each parameter's
 * moments in its shard, so a checkpoint resumes with any process count and ZeRO stage.
 *
 * <p>Format version 3 is written by runs of more than one process: each rank's file holds the pieces of the state it
 * owns (a pipeline stage's ranks: of its tensors only), and the manifest lists the whole model's global tensors, the
 * writer's layout and every piece (see {@code Shards}). Restoring reads only the pieces overlapping what this process
 * keeps, so it too resumes with any process count, pipeline stages, tensor-parallel ranks and ZeRO stage (a
 * tensor-parallel rank reads its slices of the split tensors).
 *
 * <p>Format version 2 added the manifest's checksum ({@code manifest_crc32c}) and the run id ({@code run_id}).
 * Version 1 checkpoints are still read ({@link #legacy()}): their data files are verified but their manifest cannot
 * be, and their run id is {@link #LEGACY_RUN_ID}.
 */
public final class Checkpoint {
  /** The newest manifest format this library writes and reads: a multi-process run's (see {@code Shards}). */
  public static final int FORMAT_VERSION = 3;
  /** The format a single process writes: one model file and one optimizer file. */
  public static final int SINGLE_PROCESS_FORMAT_VERSION = 2;
  /** The run id of checkpoints written before runs had ids (format version 1): all of them count as one run. */
  public static final String LEGACY_RUN_ID = "legacy";
  static final String MANIFEST = "manifest.json";
  static final String MODEL_FILE = "model.safetensors";
  static final String OPTIMIZER_FILE = "optimizer.safetensors";

  private final Path dir;
  private final JsonObject manifest;

  private Checkpoint(Path dir, JsonObject manifest) {
    this.dir = dir;
    this.manifest = manifest;
  }

  /** Opens and verifies the checkpoint in {@code dir}; throws {@link CheckpointException} naming what is wrong. */
  public static Checkpoint open(Path dir) {
    Path mf = dir.resolve(MANIFEST);
    if (!Files.isDirectory(dir)) throw new CheckpointException("checkpoint " + dir + " is not a directory");
    String mfProblem = FileProblems.notRegularFile(mf);
    if (mfProblem != null) {
      throw new CheckpointException("checkpoint " + dir + ": " + MANIFEST + " " + mfProblem
          + (Files.exists(mf, LinkOption.NOFOLLOW_LINKS) ? "" : " (incomplete write?)"));
    }
    JsonObject m;
    try {
      m = JsonParser.parseString(Files.readString(mf)).getAsJsonObject();
    } catch (IOException | JsonParseException | IllegalStateException e) {
      throw new CheckpointException(mf + ": unreadable manifest: " + (e instanceof IOException io ? FileProblems.reason(io)
          : JsonErrors.message(e)), e);
    }
    if (!m.has("format_version") || !m.has("files") || !m.has("step")) {
      throw new CheckpointException(mf + ": not an Athanor checkpoint manifest (format_version, files, step missing)");
    }
    try {
      int version = m.get("format_version").getAsInt();
      if (version > FORMAT_VERSION) {
        throw new CheckpointException(mf + ": checkpoint format version " + version + " is newer than this library reads ("
            + FORMAT_VERSION + "); it was written by Athanor " + str(m, "library_version") + ", upgrade to resume from it");
      }
      if (version >= 2) {
        if (!m.has(Manifests.CHECKSUM)) {
          throw new CheckpointException(mf + ": the manifest has no checksum (" + Manifests.CHECKSUM + "), which format version "
              + version + " requires: it was edited or cut short");
        }
        String recorded = m.get(Manifests.CHECKSUM).getAsString(), actual = Manifests.checksum(m);
        if (!actual.equals(recorded)) {
          throw new CheckpointException(mf + ": the manifest fails its checksum (CRC32C " + actual + ", recorded " + recorded
              + "): it was edited or corrupted");
        }
        if (!m.has("run_id") || m.get("run_id").getAsString().isBlank()) {
          throw new CheckpointException(mf + ": the manifest has no run_id, which format version " + version + " requires");
        }
      }
      // everything restore() reads must be present and well-formed, so that a checkpoint that opens also restores
      JsonObject files = m.getAsJsonObject("files");
      if (version >= 3) {
        if (!m.has("tensors") || !m.has("layout")) throw new CheckpointException(mf + ": the manifest lists no tensors or layout");
        Shards.pieces(files, Shards.tensors(m.getAsJsonArray("tensors")), mf.toString());
      } else {
        for (String required : List.of(MODEL_FILE, OPTIMIZER_FILE)) {
          if (!files.has(required)) throw new CheckpointException(mf + ": the manifest lists no " + required);
        }
      }
      m.get("step").getAsLong();
      m.get("adam_step").getAsLong();
      Manifests.loaderState(m.getAsJsonObject("data_loader"));
      Manifests.trainConfig(m.getAsJsonObject("train_config"));
      HfConfig.parse(m.getAsJsonObject("model_config").toString(), mf + " model_config");
      for (Map.Entry<String, com.google.gson.JsonElement> e : files.entrySet()) {
        verifyFile(dir, e.getKey(), e.getValue().getAsJsonObject());
      }
    } catch (CheckpointException e) {
      throw e;
    } catch (RuntimeException e) {  // a field missing (NPE) or of the wrong type, a bad config value
      boolean typeOrAbsence = e instanceof NullPointerException || e instanceof ClassCastException || e.getMessage() == null;
      throw new CheckpointException(mf + ": malformed manifest: " + (typeOrAbsence ? "a field is missing or has the wrong type"
          : JsonErrors.message(e)), e);
    }
    return new Checkpoint(dir, m);
  }

  /** Checks that the file {@code name} of checkpoint {@code dir} has the size and CRC32C the manifest records. */
  private static void verifyFile(Path dir, String name, JsonObject info) {
    Path f = dir.resolve(name);
    if (!dir.equals(f.getParent()) || name.equals("..") || name.equals(".")) {
      throw new CheckpointException("checkpoint " + dir + ": the manifest names a file outside the checkpoint: " + name);
    }
    long bytes = info.get("bytes").getAsLong();
    String crc = info.get("crc32c").getAsString();
    String problem = FileProblems.notRegularFile(f);
    if (problem != null) {
      throw new CheckpointException("checkpoint " + dir + ": file " + name + (problem.equals("does not exist") ? " is missing" : " " + problem));
    }
    try {
      long size = Files.size(f);
      if (size != bytes) {
        throw new CheckpointException("checkpoint " + dir + ": " + name + " has " + size + " bytes, the manifest says "
            + bytes + " (truncated or overwritten)");
      }
      String actual = crc32c(f);
      if (!actual.equals(crc)) {
        throw new CheckpointException("checkpoint " + dir + ": " + name + " fails its checksum (CRC32C " + actual
            + ", manifest " + crc + "): the file is corrupted");
      }
    } catch (IOException ex) {
      throw new CheckpointException("checkpoint " + dir + ": cannot read " + name + ": " + ex.getMessage(), ex);
    }
  }

  /** The CRC32C of a file, as 8 hex digits. */
  static String crc32c(Path f) throws IOException {
    CRC32C c = new CRC32C();
    byte[] buf = new byte[1 << 20];
    try (InputStream in = Files.newInputStream(f)) {
      for (int n; (n = in.read(buf)) > 0; ) c.update(buf, 0, n);
    }
    return String.format("%08x", c.getValue());
  }

  private static String str(JsonObject o, String k) {
    return o.has(k) && !o.get(k).isJsonNull() ? o.get(k).getAsString() : "?";
  }

  /** The verified manifest (not a copy: do not modify). */
  JsonObject manifest() {
    return manifest;
  }

  public Path directory() {
    return dir;
  }

  /** The id of the run that wrote this checkpoint, kept across resumes; {@link #LEGACY_RUN_ID} for format version 1. */
  public String runId() {
    return manifest.has("run_id") ? manifest.get("run_id").getAsString() : LEGACY_RUN_ID;
  }

  /** Whether this checkpoint has format version 1: no manifest checksum (its manifest was not verified), no run id. */
  public boolean legacy() {
    return manifest.get("format_version").getAsInt() < 2;
  }

  /** The next step to run after restoring (= optimizer steps taken). */
  public long step() {
    return manifest.get("step").getAsLong();
  }

  /** The model configuration the checkpoint was taken with. */
  public ModelConfig modelConfig() {
    return HfConfig.parse(manifest.getAsJsonObject("model_config").toString(), dir.resolve(MANIFEST) + " model_config");
  }

  /** The training configuration the checkpoint was taken with. */
  public TrainConfig trainConfig() {
    return Manifests.trainConfig(manifest.getAsJsonObject("train_config"));
  }

  /**
   * Restores parameters, optimizer moments and step, the data-loader position and the step counter into
   * {@code t}. The model config must equal the checkpoint's, and the loader must have the saved batch, seq,
   * shuffle, seed and data size; otherwise nothing is changed and the error lists the differences.
   */
  public void restore(Trainer t) {
    t.settle();  // a deferred update must not land on the restored state
    ModelConfig saved = modelConfig();
    ModelConfig mine = t.model().config();
    if (!saved.equals(mine)) {
      throw new CheckpointException("checkpoint " + dir + " was taken with a different model: saved " + saved + ", this run "
          + mine);
    }
    DataLoader.State ls = Manifests.loaderState(manifest.getAsJsonObject("data_loader"));
    DataLoader.State current = t.data().state();
    List<String> diffs = new ArrayList<>();
    if (ls.batch() != current.batch()) diffs.add("batch " + ls.batch() + " vs " + current.batch());
    if (ls.seq() != current.seq()) diffs.add("seq " + ls.seq() + " vs " + current.seq());
    if (ls.shuffle() != current.shuffle()) diffs.add("shuffle " + ls.shuffle() + " vs " + current.shuffle());
    if (ls.seed() != current.seed()) diffs.add("seed " + ls.seed() + " vs " + current.seed());
    if (ls.dataTokens() != current.dataTokens()) diffs.add("data tokens " + ls.dataTokens() + " vs " + current.dataTokens());
    if (!diffs.isEmpty()) {
      throw new CheckpointException("checkpoint " + dir + " cannot resume this run exactly: " + String.join(", ", diffs)
          + " (checkpoint vs this run)");
    }
    List<ParameterStore.Param> params = t.model().parameters().list();
    if (manifest.get("format_version").getAsInt() >= 3) {
      restorePieces(t);
    } else {
      restoreFiles(t, params);
    }
    t.syncWeights();
    t.optimizer().setStep(manifest.get("adam_step").getAsLong());
    t.restore(new Trainer.Position(step(), ls));
  }

  /** Format 1 and 2: every tensor from the model and optimizer files. */
  private void restoreFiles(Trainer t, List<ParameterStore.Param> params) {
    TensorParallel tp = t.model().tensorParallel();  // a tensor-parallel rank cuts its part of the whole tensors
    try (SafetensorsFile model = SafetensorsFile.open(dir.resolve(MODEL_FILE));
        SafetensorsFile opt = SafetensorsFile.open(dir.resolve(OPTIMIZER_FILE))) {
      if (t.optimizer().shard() != null) {
        // ZeRO 1: each parameter's full moments through host memory, of which this optimizer keeps its shard's part
        for (int i = 0; i < params.size(); i++) {
          ParameterStore.Param p = params.get(i);
          long[] shape = p.spec().shape();
          if (t.optimizer().holdsMasters()) {  // ZeRO 3: the masters of the optimizer's shard only
            try (Tensor w = Tensor.empty(DType.F32, Device.CPU, shape)) {
              readInto(model, p.name(), w);
              t.optimizer().setShardMasters(t.model().parameters().range(i), w);
            }
          } else {
            readPart(model, p.name(), p.name(), p.master(), tp);
          }
          // a tensor-parallel rank's shard: its part of the moments (shape: its local tensor's), cut from the whole ones
          try (Tensor m = Tensor.empty(DType.F32, Device.CPU, shape); Tensor v = Tensor.empty(DType.F32, Device.CPU, shape)) {
            readPart(opt, "m." + p.name(), p.name(), m, tp);
            readPart(opt, "v." + p.name(), p.name(), v, tp);
            t.optimizer().setShardMoments(t.model().parameters().range(i), m, v);
          }
        }
      } else {
        List<Tensor> m = t.optimizer().firstMoments(), v = t.optimizer().secondMoments();
        for (int i = 0; i < params.size(); i++) {
          ParameterStore.Param p = params.get(i);
          readPart(model, p.name(), p.name(), p.master(), tp);
          readPart(opt, "m." + p.name(), p.name(), m.get(i), tp);
          readPart(opt, "v." + p.name(), p.name(), v.get(i), tp);
        }
      }
    }
  }

  /**
   * Format 3: each parameter's masters in full and the moments this optimizer keeps (its shard's part, or all), read
   * from the pieces that overlap them, one piece at a time. A pipeline stage reads its own parameters only (its copy of
   * a tied embedding from the tensor the first stage wrote); a tensor-parallel rank reads the slices of the global
   * tensors it holds ({@link TensorParallel#slices}), whatever cut wrote them (under ZeRO 1 or 2 the moments of its local
   * tensor through host memory, of which its optimizer keeps its shard's part).
   */
  private void restorePieces(Trainer t) {
    ParameterStore store = t.model().parameters();
    List<Shards.GlobalTensor> tensors = Shards.tensors(manifest.getAsJsonArray("tensors"));
    Map<String, List<Shards.Piece>> files = Shards.pieces(manifest.getAsJsonObject("files"), tensors, dir.resolve(MANIFEST).toString());
    Map<String, Shards.GlobalTensor> byName = new java.util.HashMap<>();
    for (Shards.GlobalTensor g : tensors) byName.put(g.name(), g);
    boolean whole = t.model().stage().equals(dev.athanor.nn.Stage.whole(t.model().config()));
    if (whole && tensors.size() != store.size()) {
      throw new CheckpointException("checkpoint " + dir + " holds " + tensors.size() + " tensors, this model has " + store.size());
    }
    AdamW opt = t.optimizer();
    Range shard = opt.shard();
    TensorParallel tp = t.model().tensorParallel();
    try (Shards.Reader reader = new Shards.Reader()) {
      for (int i = 0; i < store.size(); i++) {
        ParameterStore.Param p = store.list().get(i);
        Shards.GlobalTensor g = byName.get(p.name());
        TensorParallel.Split split = TensorParallel.split(modelConfig(), p.name());
        long[] shape = tp.split() ? TensorParallel.wholeShape(modelConfig(), p.name()) : p.spec().shape();
        if (g == null || !java.util.Arrays.equals(g.shape(), shape)) {
          throw new CheckpointException("checkpoint " + dir + " has " + (g == null ? "no tensor " + p.name() : g)
              + " where this model has " + p.name() + " " + java.util.Arrays.toString(shape));
        }
        long n = g.numel();
        if (tp.split() && !split.replicated()) {  // each slice this rank holds, through host memory, into its place
          Range mine = shard == null ? store.range(i) : store.range(i).intersect(shard);
          // ZeRO 1 or 2: the moments of this rank's local tensor in host memory, of which its shard keeps its part
          try (Tensor m = shard == null || mine.isEmpty() ? null : Tensor.empty(DType.F32, Device.CPU, p.spec().shape());
              Tensor v = m == null ? null : Tensor.empty(DType.F32, Device.CPU, p.spec().shape())) {
            List<Tensor> dsts = shard == null ? List.of(p.master(), opt.firstMoments().get(i), opt.secondMoments().get(i))
                : m == null ? List.of(p.master()) : List.of(p.master(), m, v);
            for (int k = 0; k < dsts.size(); k++) readSlices(files, reader, Shards.ROLES.get(k), g, split, tp, dsts.get(k));
            if (m != null) opt.setShardMoments(store.range(i), m, v);
          }
          continue;
        }
        Range mine = shard == null ? store.range(i) : store.range(i).intersect(shard);
        long a = mine.isEmpty() ? 0 : mine.start() - store.range(i).start(), b = mine.isEmpty() ? 0 : mine.end() - store.range(i).start();
        if (opt.holdsMasters()) {  // ZeRO 3: the masters of the optimizer's shard only
          if (!mine.isEmpty()) {
            try (Tensor master = opt.shardMasters(mine)) {
              Shards.read(dir, files, reader, "master", g, a, b, master);
            }
          }
        } else {
          try (Tensor master = p.master().view(n)) {
            Shards.read(dir, files, reader, "master", g, 0, n, master);
          }
        }
        if (mine.isEmpty()) continue;
        for (Role role : List.of(Role.ADAM_M, Role.ADAM_V)) {
          String name = role == Role.ADAM_M ? "adam_m" : "adam_v";
          try (Tensor dst = shard != null ? opt.shardMoments(role, mine)
              : (role == Role.ADAM_M ? opt.firstMoments() : opt.secondMoments()).get(i).view(n)) {
            Shards.read(dir, files, reader, name, g, a, b, dst);
          }
        }
      }
    }
  }

  /**
   * Reads role {@code role} of the slices of split tensor {@code g} that tensor-parallel rank {@code tp} holds into its
   * local tensor {@code dst}, one slice at a time through host memory.
   */
  private void readSlices(Map<String, List<Shards.Piece>> files, Shards.Reader reader, String role, Shards.GlobalTensor g,
      TensorParallel.Split split, TensorParallel tp, Tensor dst) {
    long[] shape = g.shape();
    long at = 0;
    for (long[] held : tp.slices(split, shape)) {
      Shards.Slice s = new Shards.Slice(split.dim(), held[0], held[1]);
      try (Tensor part = Tensor.empty(DType.F32, Device.CPU, s.shape(shape)); Tensor flat = part.view(s.numel(shape));
          Tensor to = dst.slice(split.dim(), at, at + held[1] - held[0])) {
        Shards.read(dir, files, reader, role, g, s, 0, s.numel(shape), flat);
        to.copyFrom(part);
      }
      at += held[1] - held[0];
    }
  }

  /** Reads tensor {@code name} of parameter {@code param} into {@code dst}, or this rank's part of it when it is split. */
  private void readPart(SafetensorsFile f, String name, String param, Tensor dst, TensorParallel tp) {
    TensorParallel.Split split = TensorParallel.split(modelConfig(), param);
    if (!tp.split() || split.replicated()) {
      readInto(f, name, dst);
      return;
    }
    try (Tensor whole = Tensor.empty(DType.F32, Device.CPU, TensorParallel.wholeShape(modelConfig(), param))) {
      readInto(f, name, whole);
      tp.shard(split, whole, dst);
    }
  }

  private void readInto(SafetensorsFile f, String name, Tensor dst) {
    if (!f.contains(name)) throw new CheckpointException("checkpoint " + f.path() + " has no tensor " + name);
    f.readInto(name, dst);  // stages through host memory when dst lives on a GPU
  }

  @Override
  public String toString() {
    return "Checkpoint(" + dir + ", step " + step() + ")";
  }
}
