package dev.athanor.train;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.params.Role;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.Tensor;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The training step with its scalars on the device ({@link Trainer#setStepScalarsOnDevice}: the losses, the norm and
 * the clipping factor stay where the model computes, AdamW reads the factor from there, one read at the end) gives
 * the host-side step's bits on the CPU, reads tensor values into Java once per step, and still refuses a non-finite
 * step without changing the weights.
 */
class DeviceStepScalarsTest {
  static final List<ModelConfig> MODELS =
      List.of(TrainerTest.CFG, ModelConfig.llama(97, 32, 2, 48, 4, 2, 40, 10000f, false));
  static final float MAX_NORM = 0.05f;  // below every step's norm here: the clipping factor is < 1

  static TrainConfig config(int accum) {
    return new TrainConfig(3, 2, 16, accum, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, MAX_NORM, true,
        5);
  }

  /** The step results' bits and the final masters and moments of a 3-step run. */
  record Run(List<int[]> steps, float[] master, float[] m, float[] v) {}

  static Run run(Path data, ModelConfig cfg, int accum, boolean onDevice) {
    return run(data, cfg, accum, onDevice, Device.CPU);
  }

  /** A 3-step run on {@code device}; with the scalars on the device each step reads tensor values once. */
  static Run run(Path data, ModelConfig cfg, int accum, boolean onDevice, Device device) {
    TrainConfig tc = config(accum);
    try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, device);
        Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), true, 5))) {
      model.initialize(8);
      t.setStepScalarsOnDevice(onDevice);
      assertEquals(onDevice, t.stepScalarsOnDevice(), "the path taken");
      List<int[]> steps = new ArrayList<>();
      for (int s = 0; s < tc.steps(); s++) {
        long before = Tensor.hostReads();
        StepResult r = t.step();
        if (onDevice) assertEquals(1, Tensor.hostReads() - before, "step " + s + ": one read of its scalars");
        assertTrue(r.gradNorm() > MAX_NORM, "step " + s + " clips: norm " + r.gradNorm());
        steps.add(new int[] {Float.floatToRawIntBits(r.loss()), Float.floatToRawIntBits(r.gradNorm()),
            Float.floatToRawIntBits(r.lr()), (int) r.tokens()});
      }
      var store = model.parameters();
      return new Run(steps, store.flat(Role.MASTER).toFloatArray(), store.flat(Role.ADAM_M).toFloatArray(),
          store.flat(Role.ADAM_V).toFloatArray());
    }
  }

  @Test
  void sameBitsAsTheHostSideStep(@TempDir Path tmp) {
    assertSameBits(TrainerTest.shard(tmp), Device.CPU, "");
  }

  /** For GPT-2 and Llama at accum 1 and 2 on {@code device}: the two steps' every step line, masters and moments. */
  private static void assertSameBits(Path data, Device device, String prefix) {
    for (ModelConfig cfg : MODELS) {
      for (int accum : new int[] {1, 2}) {
        String what = prefix + cfg.family() + " accum " + accum;
        Run host = run(data, cfg, accum, false, device), onDevice = run(data, cfg, accum, true, device);
        for (int s = 0; s < host.steps().size(); s++) {
          assertArrayEquals(host.steps().get(s), onDevice.steps().get(s), what + " step " + s + " (loss, norm, lr, tokens)");
        }
        assertArrayEquals(host.master(), onDevice.master(), what + " masters");
        assertArrayEquals(host.m(), onDevice.m(), what + " first moments");
        assertArrayEquals(host.v(), onDevice.v(), what + " second moments");
      }
    }
  }

  /**
   * On CUDA (skipped without a GPU; run by bench/gpu/hopper/check.sh): the step that never waits for the device until
   * its end gives the host-side step's bits (the same deterministic kernels, the same sums), and reads once.
   */
  @Test
  void sameBitsAsTheHostSideStepOnCuda(@TempDir Path tmp) {
    assumeTrue(Cuda.isAvailable(), "CUDA unavailable: " + Cuda.unavailableReason());
    assertSameBits(TrainerTest.shard(tmp), Device.cuda(0), "cuda ");
  }

  @Test
  void theStepReadsTensorValuesOnceAtItsEnd(@TempDir Path tmp) {
    Path data = TrainerTest.shard(tmp);
    TrainConfig tc = config(2);
    for (boolean onDevice : new boolean[] {false, true}) {
      try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(TrainerTest.CFG, Device.CPU);
          Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), true, 5))) {
        model.initialize(8);
        t.setStepScalarsOnDevice(onDevice);
        for (int s = 0; s < tc.steps(); s++) {
          long before = Tensor.hostReads();
          t.step();
          long reads = Tensor.hostReads() - before;
          if (onDevice) {
            assertEquals(1, reads, "step " + s + ": one read of the step's scalars");
          } else {  // a loss per micro-batch and the norm's partials: the counter sees the host-side step's reads
            assertTrue(reads >= tc.accum() + 1, "step " + s + " host-side reads " + reads);
          }
        }
      }
    }
  }

  @Test
  void aNonFiniteStepIsRefusedWithoutChangingTheWeights(@TempDir Path tmp) {
    Path data = TrainerTest.shard(tmp);
    for (int accum : new int[] {1, 2}) {
      TrainConfig tc = config(accum);
      try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(TrainerTest.CFG, Device.CPU);
          Trainer t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), true, 5))) {
        model.initialize(8);
        t.setStepScalarsOnDevice(true);
        t.step();
        Tensor w = model.parameters().get("transformer.h.0.mlp.c_fc.bias").master();
        float[] v = w.toFloatArray();
        v[0] = Float.NaN;
        w.copyFrom(v);
        var store = model.parameters();
        float[] master = store.flat(Role.MASTER).toFloatArray(), m = store.flat(Role.ADAM_M).toFloatArray(),
            sv = store.flat(Role.ADAM_V).toFloatArray();
        NonFiniteException e = assertThrows(NonFiniteException.class, t::step);
        assertEquals(1, e.step(), "the step named");
        assertTrue(e.getMessage().contains("loss"), e.getMessage());
        assertEquals(1, t.optimizer().step(), "the optimizer's step count as before");
        assertEquals(1, t.nextStep());
        assertArrayEquals(master, store.flat(Role.MASTER).toFloatArray(), "accum " + accum + ": masters untouched");
        assertArrayEquals(m, store.flat(Role.ADAM_M).toFloatArray(), "accum " + accum + ": first moments untouched");
        assertArrayEquals(sv, store.flat(Role.ADAM_V).toFloatArray(), "accum " + accum + ": second moments untouched");
        assertTrue(t.consistentState().isPresent(), "a state to continue from");
      }
    }
  }
}
