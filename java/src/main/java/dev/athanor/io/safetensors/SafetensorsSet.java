package dev.athanor.io.safetensors;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import dev.athanor.io.FileProblems;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The safetensors weights of a model directory, as one name space: either a single {@value #SINGLE} or the
 * shards listed by {@value #INDEX} (whose {@code weight_map} maps each tensor name to its shard file).
 *
 * <p>{@link #open} validates everything up front: every shard must exist, be a valid safetensors file and
 * hold every tensor the index says it holds. Tensors a shard holds beyond those the index lists are not part
 * of the set. The read API is that of {@link SafetensorsFile}.
 */
public final class SafetensorsSet implements AutoCloseable {
  /** The file name of a single-file model. */
  public static final String SINGLE = "model.safetensors";
  /** The file name of the shard index of a sharded model. */
  public static final String INDEX = "model.safetensors.index.json";

  private final Path dir;
  private final List<SafetensorsFile> files;
  private final Map<String, SafetensorsFile> owner;
  private final Map<String, TensorEntry> entries;
  private final AtomicBoolean closed = new AtomicBoolean();

  private SafetensorsSet(Path dir, List<SafetensorsFile> files, Map<String, SafetensorsFile> owner,
      Map<String, TensorEntry> entries) {
    this.dir = dir;
    this.files = List.copyOf(files);
    this.owner = owner;
    this.entries = Collections.unmodifiableMap(entries);
  }

  /**
   * Opens the weights of {@code dir}: {@value #SINGLE} when present, else {@value #INDEX} and its shards.
   *
   * @throws SafetensorsException naming the directory or file when neither is present, a shard is missing or
   *     malformed, or a shard lacks a tensor the index places in it
   */
  public static SafetensorsSet open(Path dir) {
    Objects.requireNonNull(dir, "dir");
    if (!Files.exists(dir)) throw new SafetensorsException(dir + ": no such directory");
    if (!Files.isDirectory(dir)) throw new SafetensorsException(dir + ": not a directory");
    Path single = dir.resolve(SINGLE);
    if (Files.exists(single)) {
      SafetensorsFile f = SafetensorsFile.open(single);
      Map<String, SafetensorsFile> owner = new LinkedHashMap<>();
      for (String n : f.entries().keySet()) owner.put(n, f);
      return new SafetensorsSet(dir, List.of(f), owner, new LinkedHashMap<>(f.entries()));
    }
    Path index = dir.resolve(INDEX);
    if (Files.exists(index)) return openIndex(dir, index);
    String hint = Files.exists(dir.resolve("pytorch_model.bin")) || Files.exists(dir.resolve("pytorch_model.bin.index.json"))
        ? " (it has PyTorch pickle weights, which are not supported: convert them to safetensors)"
        : "";
    throw new SafetensorsException(dir + ": no " + SINGLE + " or " + INDEX + " found" + hint);
  }

  private static SafetensorsSet openIndex(Path dir, Path index) {
    String src = index.toString();
    Map<String, String> weightMap = readWeightMap(index);
    // shard file -> names the index places in it, shards in file-name order
    Map<String, List<String>> byShard = new TreeMap<>();
    for (Map.Entry<String, String> e : weightMap.entrySet()) {
      byShard.computeIfAbsent(e.getValue(), k -> new ArrayList<>()).add(e.getKey());
    }
    for (Map.Entry<String, List<String>> s : byShard.entrySet()) {
      String problem = FileProblems.notRegularFile(dir.resolve(s.getKey()));
      if (problem != null) {
        throw new SafetensorsException(src + ": shard " + s.getKey() + " (said to hold " + s.getValue().size()
            + " tensors, e.g. \"" + s.getValue().get(0) + "\") " + (problem.equals("does not exist")
                ? "does not exist in " + dir : "in " + dir + " " + problem));
      }
    }
    List<SafetensorsFile> files = new ArrayList<>();
    try {
      Map<String, SafetensorsFile> shardFiles = new LinkedHashMap<>();
      for (String shard : byShard.keySet()) {
        SafetensorsFile f = SafetensorsFile.open(dir.resolve(shard));
        files.add(f);
        shardFiles.put(shard, f);
      }
      Map<String, SafetensorsFile> owner = new LinkedHashMap<>();
      Map<String, TensorEntry> entries = new LinkedHashMap<>();
      for (Map.Entry<String, List<String>> s : byShard.entrySet()) {
        SafetensorsFile f = shardFiles.get(s.getKey());
        for (String name : s.getValue()) {
          if (!f.contains(name)) {
            String actual = null;
            for (Map.Entry<String, SafetensorsFile> o : shardFiles.entrySet()) {
              if (o.getValue().contains(name)) actual = o.getKey();
            }
            throw new SafetensorsException(src + ": tensor \"" + name + "\" is said to be in shard " + s.getKey()
                + ", which does not hold it" + (actual == null ? " (nor does any other shard of the index)" : " (it is in " + actual + ")"));
          }
        }
        // entries in the shard's offset order
        for (TensorEntry e : f.entries().values()) {
          if (s.getKey().equals(weightMap.get(e.name()))) {
            owner.put(e.name(), f);
            entries.put(e.name(), e);
          }
        }
      }
      return new SafetensorsSet(dir, files, owner, entries);
    } catch (RuntimeException e) {
      for (SafetensorsFile f : files) f.close();
      throw e;
    }
  }

  /** Parses the {@code weight_map} of an index file, checking that each shard is a plain file name. */
  private static Map<String, String> readWeightMap(Path index) {
    String src = index.toString();
    String problem = FileProblems.notRegularFile(index);
    if (problem != null) throw new SafetensorsException(src + " " + problem);
    String text;
    try {
      long size = Files.size(index);
      if (size > Header.MAX_HEADER_BYTES) {
        throw new SafetensorsException(src + ": " + size + " bytes is too large for a shard index (limit "
            + Header.MAX_HEADER_BYTES + ")");
      }
      text = Files.readString(index, StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new SafetensorsException(src + ": cannot read: " + FileProblems.reason(e), e);
    }
    JsonElement root;
    try (JsonReader r = new JsonReader(new StringReader(text))) {
      r.setStrictness(Strictness.LENIENT); // Python's json module may write NaN or Infinity in metadata
      root = JsonParser.parseReader(r);
      if (r.peek() != JsonToken.END_DOCUMENT) throw new SafetensorsException(src + ": data after the JSON object");
    } catch (JsonParseException | IOException | IllegalStateException e) {
      throw new SafetensorsException(src + ": not valid JSON: " + Header.jsonError(e), e);
    }
    if (!root.isJsonObject()) throw new SafetensorsException(src + ": not a JSON object");
    JsonElement wm = root.getAsJsonObject().get("weight_map");
    if (wm == null || wm.isJsonNull()) throw new SafetensorsException(src + ": weight_map missing");
    if (!wm.isJsonObject()) {
      throw new SafetensorsException(src + ": weight_map must be an object mapping tensor names to shard files, got "
          + Header.abbreviate(wm));
    }
    JsonObject o = wm.getAsJsonObject();
    if (o.isEmpty()) throw new SafetensorsException(src + ": weight_map is empty");
    Map<String, String> m = new LinkedHashMap<>();
    for (Map.Entry<String, JsonElement> e : o.entrySet()) {
      JsonElement v = e.getValue();
      if (!(v.isJsonPrimitive() && v.getAsJsonPrimitive().isString())) {
        throw new SafetensorsException(src + ": weight_map[\"" + e.getKey() + "\"] must be a file name, got "
            + Header.abbreviate(v));
      }
      String shard = v.getAsString();
      if (!isPlainFileName(shard)) {
        throw new SafetensorsException(src + ": weight_map[\"" + e.getKey() + "\"] = \"" + shard
            + "\" is not a file name in the model directory");
      }
      m.put(e.getKey(), shard);
    }
    return m;
  }

  private static boolean isPlainFileName(String s) {
    if (s.isEmpty() || s.equals(".") || s.equals("..") || s.indexOf('/') >= 0 || s.indexOf('\\') >= 0
        || s.indexOf('\0') >= 0) {
      return false;
    }
    try {
      Path p = Path.of(s);
      return p.getNameCount() == 1 && !p.isAbsolute();
    } catch (RuntimeException e) {
      return false;
    }
  }

  /** The model directory. */
  public Path directory() {
    return dir;
  }

  /** The open files: the single file, or the shards in file-name order. */
  public List<SafetensorsFile> files() {
    return files;
  }

  /** Every tensor of the set: by file, each file's tensors ordered by offset (unmodifiable). */
  public Map<String, TensorEntry> entries() {
    return entries;
  }

  /** Whether the set holds a tensor called {@code name}. */
  public boolean contains(String name) {
    return entries.containsKey(name);
  }

  /** The entry of tensor {@code name}; throws listing some known names when there is none. */
  public TensorEntry entry(String name) {
    return fileFor(name).entry(name);
  }

  /** The file holding tensor {@code name}. */
  public Path fileOf(String name) {
    return fileFor(name).path();
  }

  /** See {@link SafetensorsFile#read(String)}. */
  public Tensor read(String name) {
    return fileFor(name).read(name);
  }

  /** See {@link SafetensorsFile#read(String, DType)}. */
  public Tensor read(String name, DType dtype) {
    return fileFor(name).read(name, dtype);
  }

  /** See {@link SafetensorsFile#readInto(String, Tensor)}. */
  public void readInto(String name, Tensor dst) {
    fileFor(name).readInto(name, dst);
  }

  /** Closes every file. Idempotent. */
  @Override
  public void close() {
    if (closed.compareAndSet(false, true)) for (SafetensorsFile f : files) f.close();
  }

  @Override
  public String toString() {
    return "SafetensorsSet(" + dir + ", " + files.size() + " files, " + entries.size() + " tensors)";
  }

  private SafetensorsFile fileFor(String name) {
    Objects.requireNonNull(name, "name");
    if (closed.get()) throw new IllegalStateException(this + " was used after close()");
    SafetensorsFile f = owner.get(name);
    if (f == null) {
      throw new IllegalArgumentException(dir + ": no tensor \"" + name + "\"; the model holds "
          + Header.sample(entries.keySet(), 8));
    }
    return f;
  }
}
