package dev.athanor.nn;

import dev.athanor.params.ParameterStore;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.data.TokenShardWriter;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.safetensors.SafetensorsFile;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The GPT-2 and Llama models against fixtures made by an independent PyTorch implementation
 * ({@code tools/fixtures/make_fixtures.py}): logits, loss, every parameter's gradient, and the losses of 10
 * AdamW steps with clipping and a warmup + cosine schedule over llm.c's sequential loader. CPU in FP32
 * tolerances; BF16 compute with FP32 master weights (on the CPU, and on CUDA when present) in BF16 tolerances.
 */
class ModelFixtureTest {
  static Stream<Arguments> cases() {
    return Stream.of(Arguments.of("gpt2", "cpu"), Arguments.of("llama", "cpu"), Arguments.of("gpt2", "cpu-bf16"),
        Arguments.of("llama", "cpu-bf16"), Arguments.of("gpt2", "cuda"), Arguments.of("llama", "cuda"));
  }

  static Path fixture(String name) throws URISyntaxException {
    var url = ModelFixtureTest.class.getResource("/fixtures/" + name + "/config.json");
    if (url == null) throw new IllegalStateException("fixture " + name + " missing from the test resources");
    return Path.of(url.toURI()).getParent();
  }

  /** "cpu" (FP32), "cpu-bf16" (BF16 compute on the CPU: the GPU's rounding points, checked without a GPU), "cuda". */
  static Device device(String d) {
    if (d.startsWith("cpu")) return Device.CPU;
    assumeTrue(Cuda.isAvailable(), "CUDA is unavailable: " + Cuda.unavailableReason());
    return Device.cuda(0);
  }

  static int[] ints(SafetensorsFile f, String name) {
    try (Tensor t = f.read(name, DType.I32)) {
      return t.toIntArray();
    }
  }

  static float[] floats(SafetensorsFile f, String name) {
    try (Tensor t = f.read(name, DType.F32)) {
      return t.toFloatArray();
    }
  }

  static Transformer load(Path dir, Device dev) {
    return load(dir, dev, dev.isCuda() ? DType.BF16 : DType.F32);
  }

  static Transformer load(Path dir, Device dev, DType dtype) {
    return HfModelDir.loadModel(dir, dev, dtype);
  }


  /** max |a - e| <= atol + rtol * max |e| (a tolerance relative to the tensor's scale), with a message. */
  static void close(String what, float[] e, float[] a, double rtol, double atol) {
    assertEquals(e.length, a.length, what + " length");
    double max = 0, err = 0;
    int at = 0;
    for (int i = 0; i < e.length; i++) {
      max = Math.max(max, Math.abs(e[i]));
      double d = Math.abs(a[i] - e[i]);
      if (d > err) {
        err = d;
        at = i;
      }
    }
    double tol = atol + rtol * max;
    assertTrue(err <= tol, what + ": max error " + err + " at " + at + " (expected " + e[at] + ", got " + a[at] + ") > tolerance "
        + tol + " (scale " + max + ")");
  }

  /**
   * Margin of the BF16 tolerances over PyTorch's own BF16 error. BF16 runs (cpu-bf16, cuda) are checked per tensor
   * against {@code min(ceiling, 1.25 * e)}, e the largest error PyTorch's own BF16 shows on that tensor
   * ({@code bf16_errors.json} next to each fixture, written by {@code tools/fixtures/bf16_precision.py --write}): the
   * larger of autocast and the model cast to bfloat16, on the fixture and on 30 dithered copies of it (other
   * realizations of the same rounding errors: the GPU rounds at a few other points than the CPU, so its result is
   * another realization). The ceiling is the single tolerance used before (loss 2e-2, logits 5e-2, gradients
   * 1.2e-1; in the 10 steps losses 3e-2, gradient norms 5e-2), which the H200 met. The 10 steps compare with
   * autocast only (BF16 compute, FP32 AdamW), the worst step. Measured
   * (bench/results/2026-12-04-llama-bf16-precision.md): the Llama fixture is this far off in PyTorch's own BF16 too
   * (autocast: logits 4.3%, worst gradient 10.4%; cast: 5.2%, 13.1%); its
   * block-0 attention scores reach 17 (GPT-2: 6.6), so each BF16 rounding of q and k moves the sharp softmax a lot.
   * Athanor's cpu-bf16 run: Llama logits 4.1%, worst gradient 10.2%, at most 0.85 of its tolerance (layer 0's input
   * norm weight); GPT-2 at most 0.90 (h.1.mlp.c_proj.bias), mostly 0.3 to 0.6.
   */
  static final double BF16_MARGIN = 1.25;

  /** The BF16 tolerance of each tensor ("loss", "logits", "grad.NAME"): see {@link #BF16_MARGIN}. */
  static Map<String, Double> bf16Tolerances(Path dir) throws java.io.IOException {
    JsonObject j = JsonParser.parseString(Files.readString(dir.resolve("bf16_errors.json"))).getAsJsonObject();
    JsonObject fixture = j.getAsJsonObject("pytorch_bf16"), dithered = j.getAsJsonObject("pytorch_bf16_dithered_max");
    Map<String, Double> tol = new HashMap<>();
    for (String k : fixture.keySet()) {
      double ceiling = switch (k) {
        case "loss" -> 2e-2;
        case "logits", "grad_norms" -> 5e-2;
        case "train_losses" -> 3e-2;
        default -> 1.2e-1;
      };
      double e = Math.max(fixture.get(k).getAsDouble(), dithered.get(k).getAsDouble());
      tol.put(k, Math.min(ceiling, BF16_MARGIN * e));
    }
    return tol;
  }

  static double bf16Tolerance(Map<String, Double> tol, String key) {
    Double t = tol.get(key);
    if (t == null) throw new IllegalStateException("bf16_errors.json has no entry for " + key + ": regenerate it");
    return t;
  }

  @ParameterizedTest(name = "{0} on {1}")
  @MethodSource("cases")
  void logitsLossAndGradients(String name, String dev) throws Exception {
    Device device = device(dev);
    boolean bf16 = !dev.equals("cpu");
    Path dir = fixture(name);
    Map<String, Double> tol = bf16 ? bf16Tolerances(dir) : Map.of();
    try (SafetensorsFile exp = SafetensorsFile.open(dir.resolve("expected.safetensors"));
        Transformer m = load(dir, device, bf16 ? DType.BF16 : DType.F32)) {
      int[] ids = ints(exp, "input_ids"), tg = ints(exp, "targets");
      long[] shape = exp.entry("input_ids").shape();
      int b = (int) shape[0], t = (int) shape[1];
      float loss = m.forward(ids, tg, b, t);
      float expLoss = floats(exp, "loss")[0];
      // BF16: per tensor, a margin over PyTorch's own BF16 error (see BF16_MARGIN); the H200 had the llama logits
      // 3.7% and its embedding gradient 8.1% off (tolerances 5% and 12%).
      assertEquals(expLoss, loss, (bf16 ? bf16Tolerance(tol, "loss") : 2e-5) * expLoss, name + " loss");
      close(name + " logits", floats(exp, "logits"), m.lastLogits(), bf16 ? bf16Tolerance(tol, "logits") : 2e-5, 0);
      m.parameters().zeroGradients();
      m.backward(1f);
      for (ParameterStore.Param p : m.parameters().list()) {
        String key = "grad." + p.name();
        double rtol = bf16 ? bf16Tolerance(tol, key) : 1e-4;
        close(name + " grad " + p.name(), floats(exp, key), p.grad().toFloatArray(), rtol, 1e-7);
      }
    }
  }

  @ParameterizedTest(name = "{0} on {1}")
  @MethodSource("cases")
  void tenAdamWSteps(String name, String dev, @TempDir Path tmp) throws Exception {
    Device device = device(dev);
    boolean bf16 = !dev.equals("cpu");
    Path dir = fixture(name);
    JsonObject j = JsonParser.parseString(Files.readString(dir.resolve("train.json"))).getAsJsonObject();
    double lossTol = bf16 ? bf16Tolerance(bf16Tolerances(dir), "train_losses") : 5e-5;
    double normTol = bf16 ? bf16Tolerance(bf16Tolerances(dir), "grad_norms") : 1e-4;
    float lr = j.get("lr").getAsFloat();
    StepResult[] steps = train(dir, device, bf16 ? DType.BF16 : DType.F32, tmp);
    for (int s = 0; s < steps.length; s++) {
      StepResult r = steps[s];
      float loss = j.getAsJsonArray("losses").get(s).getAsFloat();
      float norm = j.getAsJsonArray("grad_norms").get(s).getAsFloat();
      assertEquals(loss, r.loss(), lossTol * loss, name + " loss of step " + s);
      assertEquals(norm, r.gradNorm(), normTol * norm, name + " gradient norm of step " + s);
      assertEquals(j.getAsJsonArray("lrs").get(s).getAsFloat(), r.lr(), 1e-6f * lr, name + " lr of step " + s);
    }
  }

  /** The fixture's training steps (train.json's hyperparameters, llm.c's sequential loader over train_tokens). */
  static StepResult[] train(Path dir, Device device, DType dtype, Path tmp) throws Exception {
    JsonObject j = JsonParser.parseString(Files.readString(dir.resolve("train.json"))).getAsJsonObject();
    try (SafetensorsFile exp = SafetensorsFile.open(dir.resolve("expected.safetensors"));
        Transformer m = load(dir, device, dtype)) {
      int n = floats(exp, "train_losses").length;
      Path shard = tmp.resolve("train.bin");
      try (TokenShardWriter w = TokenShardWriter.create(shard, m.config().vocabSize())) {
        w.write(ints(exp, "train_tokens"));
      }
      TrainConfig tc = new TrainConfig(n, j.get("batch").getAsInt(), j.get("seq").getAsInt(), 1,
          j.get("lr").getAsFloat(), j.get("min_lr").getAsFloat(), j.get("warmup").getAsInt(), Schedule.COSINE,
          j.get("weight_decay").getAsFloat(), j.get("beta1").getAsFloat(), j.get("beta2").getAsFloat(),
          j.get("eps").getAsFloat(), j.get("grad_clip").getAsFloat(), false, 0);
      StepResult[] out = new StepResult[n];
      try (TokenDataset data = TokenDataset.open(shard);
          Trainer tr = new Trainer(m, tc, new DataLoader(data, tc.batch(), tc.seq(), false, 0))) {
        for (int s = 0; s < n; s++) out[s] = tr.step();
      }
      return out;
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("names")
  void saveThenLoadIsBitExact(String name, @TempDir Path tmp) throws Exception {
    try (Transformer m = load(fixture(name), Device.CPU)) {
      HfModelDir.save(tmp, m.config(), m.weights(), DType.F32);
      try (Transformer back = load(tmp, Device.CPU)) {
        assertEquals(m.config(), back.config());
        for (ParameterStore.Param p : m.parameters().list()) {
          float[] a = p.master().toFloatArray(), c = back.parameters().get(p.name()).master().toFloatArray();
          assertTrue(java.util.Arrays.equals(a, c), p.name() + " differs after save/load");
        }
      }
    }
  }

  static Stream<String> names() {
    return Stream.of("gpt2", "llama");
  }

}
