package dev.athanor.io.hf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.io.safetensors.SafetensorsFile;
import dev.athanor.io.safetensors.SafetensorsSet;
import dev.athanor.io.safetensors.SafetensorsWriter;
import dev.athanor.nn.ModelConfig;
import dev.athanor.params.ParamSpec;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.HalfFloats;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Model directories: save/load round trips, hub layouts, sharding, and mismatched weights. */
@SuppressWarnings("try")
class HfModelDirTest {
  @TempDir Path dir;

  /** GPT-2 with odd sizes: vocab 97, context 16, 2 layers, width 24, 3 heads (tied head). */
  static final ModelConfig GPT2 = ModelConfig.gpt2(97, 16, 2, 24, 3);
  /** Llama with grouped-query attention and an untied head. */
  static final ModelConfig LLAMA = ModelConfig.llama(101, 32, 2, 32, 4, 2, 40, 10000f, false);

  /** Random parameters (special values included) keyed by canonical name, in spec order. */
  static Map<String, Tensor> params(ModelConfig c, long seed) {
    Random rnd = new Random(seed);
    Map<String, Tensor> m = new LinkedHashMap<>();
    for (ParamSpec s : c.parameterSpecs()) {
      float[] v = new float[(int) s.numel()];
      for (int i = 0; i < v.length; i++) v[i] = (float) rnd.nextGaussian() * 0.02f;
      v[0] = i0(rnd);
      m.put(s.name(), Tensor.of(v, s.shape()));
    }
    return m;
  }

  private static float i0(Random rnd) {
    float[] special = {-0f, Float.MIN_VALUE, 1e-40f, 3.4e38f, Float.intBitsToFloat(0x3f800001)};
    return special[rnd.nextInt(special.length)];
  }

  static void assertBitsEqual(Tensor want, Tensor got, String what) {
    assertEquals(want.dtype(), got.dtype(), what);
    assertArrayEquals(want.shape(), got.shape(), what);
    float[] a = want.toFloatArray(), b = got.toFloatArray();
    for (int i = 0; i < a.length; i++) {
      if (Float.floatToRawIntBits(a[i]) != Float.floatToRawIntBits(b[i])) {
        assertEquals(a[i], b[i], what + " element " + i);
      }
    }
  }

  private static void assertSame(Map<String, Tensor> want, HfModelDir.Loaded got) {
    assertEquals(new ArrayList<>(want.keySet()), new ArrayList<>(got.tensors().keySet()), "canonical names in spec order");
    for (Map.Entry<String, Tensor> e : want.entrySet()) assertBitsEqual(e.getValue(), got.tensor(e.getKey()), e.getKey());
  }

  private HfFormatException loadFails(Path d, String... fragments) {
    HfFormatException e = assertThrows(HfFormatException.class, () -> HfModelDir.load(d).close());
    for (String f : fragments) assertTrue(e.getMessage().contains(f), "message lacks \"" + f + "\": " + e.getMessage());
    return e;
  }

  private static List<String> files(Path d) throws IOException {
    try (Stream<Path> s = Files.list(d)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  @Test
  void saveThenLoadIsBitExactForBothFamilies() throws IOException {
    for (ModelConfig c : new ModelConfig[] {GPT2, LLAMA, LLAMA.withVocabSize(7), ModelConfig.llama(50, 8, 1, 16, 2, 1, 24, 5e5f, true)}) {
      Path d = dir.resolve(c.family() + "-" + c.vocabSize() + "-" + c.tiedEmbeddings());
      try (Scope s = Scope.open()) {
        Map<String, Tensor> p = params(c, 42);
        HfModelDir.save(d, c, p, DType.F32);
        assertEquals(List.of("config.json", "model.safetensors"), files(d));
        try (SafetensorsFile f = SafetensorsFile.open(d.resolve("model.safetensors"))) {
          assertEquals(Map.of("format", "pt"), f.metadata());
          assertEquals(new ArrayList<>(p.keySet()), new ArrayList<>(f.entries().keySet()), "written in spec order");
        }
        assertEquals(c, HfModelDir.readConfig(d));
        try (HfModelDir.Loaded l = HfModelDir.load(d)) {
          assertEquals(c, l.config());
          assertSame(p, l);
          assertEquals(Device.CPU, l.tensor(c.embeddingName()).device());
        }
      }
    }
  }

  @Test
  void halfPrecisionSaveAndLoad() throws IOException {
    try (Scope s = Scope.open()) {
      Map<String, Tensor> p = params(LLAMA, 5);
      for (DType d : new DType[] {DType.BF16, DType.F16}) {
        Path out = dir.resolve(d.name());
        HfModelDir.save(out, LLAMA, p, d);
        JsonObject cfg = JsonParser.parseString(Files.readString(out.resolve("config.json"))).getAsJsonObject();
        assertEquals(d == DType.BF16 ? "bfloat16" : "float16", cfg.get("torch_dtype").getAsString());
        try (HfModelDir.Loaded f32 = HfModelDir.load(out); HfModelDir.Loaded half = HfModelDir.load(out, d)) {
          for (Map.Entry<String, Tensor> e : p.entrySet()) {
            float[] src = e.getValue().toFloatArray();
            float[] got = f32.tensor(e.getKey()).toFloatArray();
            for (int i = 0; i < src.length; i++) assertEquals(HalfFloats.round(src[i], d), got[i], e.getKey());
            assertEquals(d, half.tensor(e.getKey()).dtype());
            assertArrayEquals(got, half.tensor(e.getKey()).toFloatArray());
          }
        }
        // a half-precision model saved again as half precision is unchanged
        try (HfModelDir.Loaded half = HfModelDir.load(out, d)) {
          HfModelDir.save(out, LLAMA, half.tensors(), d);
          try (HfModelDir.Loaded again = HfModelDir.load(out, d)) {
            for (String n : half.tensors().keySet()) assertBitsEqual(half.tensor(n), again.tensor(n), n);
          }
        }
      }
      assertThrows(IllegalArgumentException.class, () -> HfModelDir.load(dir.resolve("BF16"), DType.I32));
      assertThrows(IllegalArgumentException.class, () -> HfModelDir.save(dir.resolve("x"), LLAMA, p, DType.I32));
    }
  }

  @Test
  void shardedSaveWritesAnIndexAndLoadsBack() throws IOException {
    try (Scope s = Scope.open()) {
      Map<String, Tensor> p = params(LLAMA, 9);
      long total = 0;
      for (Tensor t : p.values()) total += t.byteSize();
      HfModelDir.save(dir, LLAMA, p, DType.F32, 10_000);
      List<String> names = files(dir);
      assertTrue(names.contains(SafetensorsSet.INDEX));
      assertFalse(names.contains(SafetensorsSet.SINGLE));
      long shards = names.stream().filter(n -> n.matches("model-\\d{5}-of-\\d{5}\\.safetensors")).count();
      assertTrue(shards > 2, names.toString());
      String last = String.format("model-%05d-of-%05d.safetensors", shards, shards);
      assertTrue(names.contains(last), names.toString());
      JsonObject idx = JsonParser.parseString(Files.readString(dir.resolve(SafetensorsSet.INDEX))).getAsJsonObject();
      assertEquals(total, idx.getAsJsonObject("metadata").get("total_size").getAsLong());
      JsonObject wm = idx.getAsJsonObject("weight_map");
      assertEquals(p.keySet().size(), wm.size());
      // no shard over the limit unless it holds a single tensor larger than it (the embeddings here: 12928 bytes)
      for (String n : names) {
        if (!n.startsWith("model-")) continue;
        try (SafetensorsFile f = SafetensorsFile.open(dir.resolve(n))) {
          long bytes = f.entries().values().stream().mapToLong(e -> e.byteLength()).sum();
          assertTrue(bytes <= 10_000 || f.entries().size() == 1, n + " holds " + bytes + " bytes");
          for (String t : f.entries().keySet()) assertEquals(n, wm.get(t).getAsString());
        }
      }
      try (HfModelDir.Loaded l = HfModelDir.load(dir)) {
        assertSame(p, l);
      }
      // sharding again with fewer shards removes the stale higher-numbered ones
      HfModelDir.save(dir, LLAMA, p, DType.F32, 40_000);
      List<String> fewer = files(dir);
      assertFalse(fewer.contains(last), fewer.toString());
      assertTrue(fewer.stream().filter(n -> n.startsWith("model-")).allMatch(n -> n.endsWith("-of-00003.safetensors")), fewer.toString());
      try (HfModelDir.Loaded l = HfModelDir.load(dir)) {
        assertSame(p, l);
      }
      // saving unsharded removes the index and shards; sharding again removes the single file
      HfModelDir.save(dir, LLAMA, p, DType.F32);
      assertEquals(List.of("config.json", "model.safetensors"), files(dir));
      HfModelDir.save(dir, LLAMA, p, DType.F32, 40_000);
      assertFalse(files(dir).contains(SafetensorsSet.SINGLE));
      try (HfModelDir.Loaded l = HfModelDir.load(dir)) {
        assertSame(p, l);
      }
    }
  }

  @Test
  void gpt2AsPublishedOnTheHubLoadsToTheSameTensors() throws IOException {
    try (Scope s = Scope.open()) {
      Map<String, Tensor> p = params(GPT2, 77);
      // the hub's files: no "transformer." prefix, attention-mask buffers, and an lm_head copy of wte
      Map<String, Tensor> hub = new LinkedHashMap<>();
      for (Map.Entry<String, Tensor> e : p.entrySet()) {
        String n = e.getKey().substring("transformer.".length());
        hub.put(n, e.getValue());
        if (n.endsWith("attn.c_attn.weight")) {
          String block = n.substring(0, n.length() - "c_attn.weight".length());
          hub.put(block + "bias", Tensor.zeros(DType.F32, Device.CPU, 1, 1, 16, 16));
          hub.put(block + "masked_bias", Tensor.scalar(-1e4f));
        }
      }
      hub.put("lm_head.weight", p.get("transformer.wte.weight"));
      SafetensorsWriter.write(dir.resolve("model.safetensors"), hub, Map.of("format", "pt"));
      Files.writeString(dir.resolve("config.json"), """
          {
            "activation_function": "gelu_new",
            "architectures": ["GPT2LMHeadModel"],
            "attn_pdrop": 0.1,
            "bos_token_id": 50256,
            "embd_pdrop": 0.1,
            "eos_token_id": 50256,
            "initializer_range": 0.02,
            "layer_norm_epsilon": 1e-05,
            "model_type": "gpt2",
            "n_ctx": 16,
            "n_embd": 24,
            "n_head": 3,
            "n_layer": 2,
            "n_positions": 16,
            "resid_pdrop": 0.1,
            "summary_activation": null,
            "vocab_size": 97
          }
          """);
      try (HfModelDir.Loaded l = HfModelDir.load(dir)) {
        assertEquals(GPT2, l.config());
        assertSame(p, l);
      }
    }
  }

  @Test
  void llamaRotaryBuffersAndTiedHeadCopiesAreSkipped() throws IOException {
    try (Scope s = Scope.open()) {
      ModelConfig tied = ModelConfig.llama(40, 8, 2, 16, 2, 2, 20, 10000f, true);
      Map<String, Tensor> p = params(tied, 3);
      Map<String, Tensor> withExtras = new LinkedHashMap<>(p);
      withExtras.put("model.layers.0.self_attn.rotary_emb.inv_freq", Tensor.of(new float[] {1, 0.1f, 0.01f, 0.001f}));
      withExtras.put("model.layers.1.self_attn.rotary_emb.inv_freq", Tensor.of(new float[] {1, 0.1f, 0.01f, 0.001f}));
      withExtras.put("lm_head.weight", p.get("model.embed_tokens.weight"));
      SafetensorsWriter.write(dir.resolve("model.safetensors"), withExtras, Map.of("format", "pt"));
      HfConfig.write(tied, dir.resolve("config.json"));
      try (HfModelDir.Loaded l = HfModelDir.load(dir)) {
        assertSame(p, l);
      }
    }
  }

  @Test
  void missingTensorsAreListedWithTheDirectory() throws IOException {
    try (Scope s = Scope.open()) {
      Map<String, Tensor> p = params(GPT2, 1);
      HfConfig.write(GPT2, dir.resolve("config.json"));
      Map<String, Tensor> partial = new LinkedHashMap<>(p);
      partial.remove("transformer.h.1.mlp.c_fc.bias");
      partial.remove("transformer.ln_f.weight");
      SafetensorsWriter.write(dir.resolve("model.safetensors"), partial, null);
      loadFails(dir, dir.toString(), "missing 2 tensors: transformer.h.1.mlp.c_fc.bias, transformer.ln_f.weight");

      // almost everything missing: the first few and a count
      SafetensorsWriter.write(dir.resolve("model.safetensors"), Map.of("transformer.wte.weight", p.get("transformer.wte.weight")), null);
      int n = GPT2.parameterSpecs().size() - 1;
      loadFails(dir, "missing " + n + " tensors: transformer.wpe.weight, transformer.h.0.ln_1.weight", "(" + (n - 8) + " more)");

      // an untied head must be present
      Path l = dir.resolve("llama");
      Files.createDirectories(l);
      Map<String, Tensor> lp = params(LLAMA, 2);
      HfConfig.write(LLAMA, l.resolve("config.json"));
      Map<String, Tensor> noHead = new LinkedHashMap<>(lp);
      noHead.remove("lm_head.weight");
      SafetensorsWriter.write(l.resolve("model.safetensors"), noHead, null);
      loadFails(l, "missing 1 tensor: lm_head.weight", "untied head");
    }
  }

  @Test
  void unexpectedTensorsAreErrors() throws IOException {
    try (Scope s = Scope.open()) {
      Map<String, Tensor> p = new LinkedHashMap<>(params(GPT2, 1));
      HfConfig.write(GPT2, dir.resolve("config.json"));
      p.put("transformer.h.2.ln_1.weight", Tensor.of(new float[24]));
      p.put("score.weight", Tensor.of(new float[24]));
      SafetensorsWriter.write(dir.resolve("model.safetensors"), p, null);
      loadFails(dir, dir.toString(), "unexpected 2 tensors: transformer.h.2.ln_1.weight, score.weight");

      // the prefixed and the unprefixed name of one parameter together are ambiguous
      Map<String, Tensor> both = new LinkedHashMap<>(params(GPT2, 1));
      both.put("wte.weight", both.get("transformer.wte.weight"));
      SafetensorsWriter.write(dir.resolve("model.safetensors"), both, null);
      loadFails(dir, "holds both \"transformer.wte.weight\" and \"wte.weight\"");
    }
  }

  @Test
  void wrongShapesAndDtypesNameTheTensorAndFile() throws IOException {
    try (Scope s = Scope.open()) {
      Map<String, Tensor> p = new LinkedHashMap<>(params(LLAMA, 1));
      HfConfig.write(LLAMA, dir.resolve("config.json"));
      p.put("model.layers.1.self_attn.k_proj.weight", Tensor.of(new float[32 * 32], 32, 32)); // MHA-sized, config has GQA
      SafetensorsWriter.write(dir.resolve("model.safetensors"), p, null);
      loadFails(dir, dir.resolve("model.safetensors").toString(), "\"model.layers.1.self_attn.k_proj.weight\"",
          "has shape [32, 32]", "expected [16, 32]");

      p = new LinkedHashMap<>(params(LLAMA, 1));
      p.put("model.norm.weight", Tensor.of(new int[32]));
      SafetensorsWriter.write(dir.resolve("model.safetensors"), p, null);
      loadFails(dir, "\"model.norm.weight\" has dtype I32", "floating point");
    }
  }

  @Test
  void badDirectories() throws IOException {
    loadFails(dir.resolve("absent"), "absent", "no such model directory");
    Path file = Files.writeString(dir.resolve("file"), "x");
    loadFails(file, "not a directory");
    loadFails(dir, dir.toString(), "no config.json");
    HfConfig.write(GPT2, dir.resolve("config.json"));
    loadFails(dir, "no model.safetensors or model.safetensors.index.json");
    Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"bert\"}");
    loadFails(dir, dir.resolve("config.json").toString(), "unsupported model_type \"bert\"");
    Files.write(dir.resolve("model.safetensors"), new byte[] {1, 2, 3});
    HfConfig.write(GPT2, dir.resolve("config.json"));
    loadFails(dir, dir.resolve("model.safetensors").toString(), "shorter than the 8-byte header length");
  }

  @Test
  void saveChecksTheTensorsAgainstTheConfigBeforeWriting() {
    try (Scope s = Scope.open()) {
      Path out = dir.resolve("out");
      Map<String, Tensor> p = new LinkedHashMap<>(params(GPT2, 1));
      p.remove("transformer.wpe.weight");
      p.put("lm_head.weight", Tensor.of(new float[97 * 24], 97, 24)); // tied: no head of its own
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HfModelDir.save(out, GPT2, p, DType.F32));
      assertTrue(e.getMessage().contains("missing 1 tensor: transformer.wpe.weight")
          && e.getMessage().contains("unexpected 1 tensor: lm_head.weight"), e.getMessage());
      Map<String, Tensor> q = new LinkedHashMap<>(params(GPT2, 1));
      q.put("transformer.ln_f.bias", Tensor.of(new float[25]));
      e = assertThrows(IllegalArgumentException.class, () -> HfModelDir.save(out, GPT2, q, DType.F32));
      assertTrue(e.getMessage().contains("\"transformer.ln_f.bias\" has shape [25], expected [24]"), e.getMessage());
      assertThrows(IllegalArgumentException.class, () -> HfModelDir.save(out, GPT2, params(GPT2, 1), DType.F32, 0));
      assertFalse(Files.exists(out), "nothing written");
    }
  }

  @Test
  void saveAcceptsStridedTensorsAndCreatesNestedDirectories() throws IOException {
    try (Scope s = Scope.open()) {
      Map<String, Tensor> p = new LinkedHashMap<>(params(GPT2, 4));
      // a transposed view with the right shape: [24, 72] from a [72, 24] buffer
      Tensor base = Tensor.of(new float[72 * 24], 72, 24);
      float[] v = new float[72 * 24];
      for (int i = 0; i < v.length; i++) v[i] = i;
      base.copyFrom(v);
      Tensor strided = base.transpose(0, 1);
      p.put("transformer.h.0.attn.c_attn.weight", strided);
      Path out = dir.resolve("a/b/c");
      HfModelDir.save(out, GPT2, p, DType.F32);
      try (HfModelDir.Loaded l = HfModelDir.load(out)) {
        assertArrayEquals(strided.toFloatArray(), l.tensor("transformer.h.0.attn.c_attn.weight").toFloatArray());
        assertFalse(strided.isContiguous());
      }
    }
  }
}
