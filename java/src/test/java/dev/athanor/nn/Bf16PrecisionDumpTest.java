package dev.athanor.nn;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.safetensors.SafetensorsFile;
import dev.athanor.io.safetensors.SafetensorsWriter;
import dev.athanor.params.ParameterStore;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.StepResult;
import java.lang.reflect.Field;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Not a check: writes the cpu-bf16 (or, with {@code -Dathanor.bf16dump.dtype=F32}, the FP32) logits, loss, every
 * gradient, the 10 training steps' losses and gradient norms, and block 0's activations of both model fixtures to
 * the folder named by {@code -Dathanor.bf16dump}, for {@code tools/fixtures/bf16_precision.py --ours} to compare
 * with PyTorch's BF16. Skipped unless that property is set.
 */
class Bf16PrecisionDumpTest {
  @Test
  void dump() throws Exception {
    String dir = System.getProperty("athanor.bf16dump");
    assumeTrue(dir != null && !dir.isEmpty(), "set -Dathanor.bf16dump=DIR to write the dump");
    DType dt = DType.valueOf(System.getProperty("athanor.bf16dump.dtype", "BF16"));
    Path out = Path.of(dir);
    Files.createDirectories(out);
    for (String name : List.of("gpt2", "llama")) {
      Path fx = ModelFixtureTest.fixture(name);
      List<Tensor> owned = new ArrayList<>();
      try (SafetensorsFile exp = SafetensorsFile.open(fx.resolve("expected.safetensors"));
          Transformer m = ModelFixtureTest.load(fx, Device.CPU, dt)) {
        int[] ids = ModelFixtureTest.ints(exp, "input_ids"), tg = ModelFixtureTest.ints(exp, "targets");
        long[] shape = exp.entry("input_ids").shape();
        float loss = m.forward(ids, tg, (int) shape[0], (int) shape[1]);
        Field f = Transformer.class.getDeclaredField("ws");
        f.setAccessible(true);
        Workspace w = (Workspace) f.get(m);
        if (name.equals("llama")) {
          BlockActs a = w.acts(0);
          Map<String, Tensor> acts = new LinkedHashMap<>();
          acts.put("n1", a.n1);
          acts.put("q", a.heads.q());
          acts.put("k", a.heads.k());
          acts.put("v", a.heads.v());
          acts.put("att", a.att);
          acts.put("x2", a.x2);
          acts.put("n2", a.n2);
          acts.put("gate", a.gate);
          acts.put("up", a.up);
          acts.put("act", a.act);
          acts.put("out", w.residual[1]);
          SafetensorsWriter.write(out.resolve(name + "-ours-acts.safetensors"), acts, null, DType.F32);
        }
        Map<String, Tensor> res = new LinkedHashMap<>();
        Tensor l = Tensor.of(new float[] {loss}, 1);
        owned.add(l);
        res.put("loss", l);
        float[] logits = m.lastLogits();
        Tensor lg = Tensor.of(logits, logits.length);
        owned.add(lg);
        res.put("logits", lg);
        m.parameters().zeroGradients();
        m.backward(1f);
        for (ParameterStore.Param p : m.parameters().list()) res.put("grad." + p.name(), p.grad());
        StepResult[] steps = ModelFixtureTest.train(fx, Device.CPU, dt, Files.createTempDirectory(out, "train"));
        float[] losses = new float[steps.length], norms = new float[steps.length];
        for (int s = 0; s < steps.length; s++) {
          losses[s] = steps[s].loss();
          norms[s] = steps[s].gradNorm();
        }
        Tensor tl = Tensor.of(losses, losses.length), tn = Tensor.of(norms, norms.length);
        owned.add(tl);
        owned.add(tn);
        res.put("train_losses", tl);
        res.put("grad_norms", tn);
        SafetensorsWriter.write(out.resolve(name + "-ours.safetensors"), res, null, DType.F32);
      } finally {
        for (Tensor t : owned) t.close();
      }
    }
  }
}
