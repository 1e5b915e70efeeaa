package dev.athanor.io.safetensors;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A model directory's weights as one set: single file, sharded index, and broken indexes. */
@SuppressWarnings("try")
class SafetensorsSetTest {
  @TempDir Path dir;

  private static Map<String, Tensor> tensors(String... namesAndValues) {
    Map<String, Tensor> m = new LinkedHashMap<>();
    for (int i = 0; i < namesAndValues.length; i += 2) {
      m.put(namesAndValues[i], Tensor.of(new float[] {Float.parseFloat(namesAndValues[i + 1])}));
    }
    return m;
  }

  private void shards() {
    SafetensorsWriter.write(dir.resolve("model-00001-of-00002.safetensors"), tensors("a", "1", "b", "2"), Map.of("format", "pt"));
    SafetensorsWriter.write(dir.resolve("model-00002-of-00002.safetensors"), tensors("c", "3"), Map.of("format", "pt"));
  }

  private void index(String weightMap) throws IOException {
    Files.writeString(dir.resolve(SafetensorsSet.INDEX), "{\"metadata\": {\"total_size\": 12}, \"weight_map\": " + weightMap + "}");
  }

  private void bad(String... fragments) {
    SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsSet.open(dir).close());
    for (String f : fragments) assertTrue(e.getMessage().contains(f), "message lacks \"" + f + "\": " + e.getMessage());
  }

  @Test
  void singleFile() {
    try (Scope s = Scope.open()) {
      SafetensorsWriter.write(dir.resolve(SafetensorsSet.SINGLE), tensors("x", "1.5", "y", "-2"), null);
      try (SafetensorsSet set = SafetensorsSet.open(dir)) {
        assertEquals(1, set.files().size());
        assertEquals(List.of("x", "y"), new ArrayList<>(set.entries().keySet()));
        assertTrue(set.contains("y"));
        assertArrayEquals(new float[] {-2f}, set.read("y").toFloatArray());
        assertEquals(DType.BF16, set.read("x", DType.BF16).dtype());
        Tensor dst = Tensor.zeros(DType.F16, Device.CPU, 1);
        set.readInto("x", dst);
        assertArrayEquals(new float[] {1.5f}, dst.toFloatArray());
        assertEquals(dir.resolve(SafetensorsSet.SINGLE), set.fileOf("x"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> set.read("z"));
        assertTrue(e.getMessage().contains("\"z\"") && e.getMessage().contains("\"x\""), e.getMessage());
      }
    }
  }

  @Test
  void shardedIndex() throws IOException {
    try (Scope s = Scope.open()) {
      shards();
      index("{\"c\": \"model-00002-of-00002.safetensors\", \"a\": \"model-00001-of-00002.safetensors\","
          + " \"b\": \"model-00001-of-00002.safetensors\"}");
      try (SafetensorsSet set = SafetensorsSet.open(dir)) {
        assertEquals(2, set.files().size());
        assertEquals(List.of("a", "b", "c"), new ArrayList<>(set.entries().keySet()), "by shard, then offset");
        assertArrayEquals(new float[] {3f}, set.read("c").toFloatArray());
        assertArrayEquals(new float[] {1f}, set.read("a").toFloatArray());
        assertEquals(dir.resolve("model-00002-of-00002.safetensors"), set.fileOf("c"));
        set.close();
        assertThrows(IllegalStateException.class, () -> set.read("a"));
      }
    }
  }

  @Test
  void shardTensorsTheIndexDoesNotListAreNotPartOfTheSet() throws IOException {
    try (Scope s = Scope.open()) {
      shards();
      index("{\"a\": \"model-00001-of-00002.safetensors\", \"c\": \"model-00002-of-00002.safetensors\"}");
      try (SafetensorsSet set = SafetensorsSet.open(dir)) {
        assertEquals(List.of("a", "c"), new ArrayList<>(set.entries().keySet()));
        assertFalse(set.contains("b"));
      }
    }
  }

  @Test
  void singleFileTakesPrecedenceOverAnIndex() throws IOException {
    try (Scope s = Scope.open()) {
      shards();
      index("{\"a\": \"model-00001-of-00002.safetensors\"}");
      SafetensorsWriter.write(dir.resolve(SafetensorsSet.SINGLE), tensors("only", "9"), null);
      try (SafetensorsSet set = SafetensorsSet.open(dir)) {
        assertEquals(List.of("only"), new ArrayList<>(set.entries().keySet()));
      }
    }
  }

  @Test
  void missingShard() throws IOException {
    try (Scope s = Scope.open()) {
      shards();
      index("{\"a\": \"model-00001-of-00002.safetensors\", \"z\": \"model-00003-of-00003.safetensors\"}");
      bad(SafetensorsSet.INDEX, "model-00003-of-00003.safetensors", "does not exist", "\"z\"");
    }
  }

  @Test
  void nameInTheWrongShard() throws IOException {
    try (Scope s = Scope.open()) {
      shards();
      index("{\"a\": \"model-00002-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\","
          + " \"c\": \"model-00002-of-00002.safetensors\"}");
      bad(SafetensorsSet.INDEX, "\"a\"", "said to be in shard model-00002-of-00002.safetensors",
          "it is in model-00001-of-00002.safetensors");
      index("{\"nowhere\": \"model-00001-of-00002.safetensors\"}");
      bad("\"nowhere\"", "nor does any other shard");
    }
  }

  @Test
  void malformedIndexes() throws IOException {
    try (Scope s = Scope.open()) {
      shards();
      Files.writeString(dir.resolve(SafetensorsSet.INDEX), "{\"weight_map\": {\"a\": ");
      bad(SafetensorsSet.INDEX, "not valid JSON");
      Files.writeString(dir.resolve(SafetensorsSet.INDEX), "[]");
      bad(SafetensorsSet.INDEX, "not a JSON object");
      Files.writeString(dir.resolve(SafetensorsSet.INDEX), "{\"metadata\": {}}");
      bad(SafetensorsSet.INDEX, "weight_map missing");
      index("[\"a\"]");
      bad("weight_map must be an object");
      index("{}");
      bad("weight_map is empty");
      index("{\"a\": 1}");
      bad("weight_map[\"a\"] must be a file name");
      index("{\"a\": \"../model-00001-of-00002.safetensors\"}");
      bad("is not a file name in the model directory");
      index("{\"a\": \"/etc/passwd\"}");
      bad("is not a file name in the model directory");
      // a shard that is not a safetensors file
      Files.writeString(dir.resolve("junk.safetensors"), "junk");
      index("{\"a\": \"junk.safetensors\"}");
      bad("junk.safetensors", "shorter than the 8-byte header length");
    }
  }

  @Test
  void directoryWithoutWeights() throws IOException {
    bad(dir.toString(), "no model.safetensors or model.safetensors.index.json found");
    Files.write(dir.resolve("pytorch_model.bin"), new byte[10]);
    bad("PyTorch pickle weights");
    SafetensorsException e = assertThrows(SafetensorsException.class, () -> SafetensorsSet.open(dir.resolve("absent")));
    assertTrue(e.getMessage().contains("absent") && e.getMessage().contains("no such directory"), e.getMessage());
    Path file = Files.writeString(dir.resolve("plain"), "x");
    e = assertThrows(SafetensorsException.class, () -> SafetensorsSet.open(file));
    assertTrue(e.getMessage().contains("not a directory"), e.getMessage());
  }
}
