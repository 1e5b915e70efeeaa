package dev.athanor.dist.pipeline;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.athanor.dist.ThreadRanks;
import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.train.Schedule;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.TrainerTest;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pipeline stages keep the activations of their micro-batches in flight: the stages of {@code --pp 3} (and 2) as threads
 * of this JVM (point-to-point messages through queues, the group's sums in rank order) over 4 micro-batches. Each stage
 * runs exactly one forward per micro-batch (none rerun) and keeps {@code min(pp - s, M)} activation sets, with and
 * without recomputation, and the losses, norms and final weights equal one process with {@code --accum 4} bit for bit.
 */
class PipelineActivationsTest {
  static final ModelConfig LLAMA = ModelConfig.llama(300, 64, 3, 32, 4, 2, 48, 10000f, false);
  static final ModelConfig GPT2 = ModelConfig.gpt2(97, 32, 3, 32, 2);  // tied embeddings
  static final int MICRO = 4, STEPS = 3, BATCH = 2, SEQ = 16;

  /** What one stage did: per step its forwards, the loss and norm (as the trainer reports them), its final masters. */
  record StageRun(int[] forwards, int sets, float[] losses, float[] norms, Map<String, float[]> weights) {}

  private static TrainConfig config() {
    return new TrainConfig(STEPS, BATCH, SEQ, MICRO, 1e-2f, 1e-3f, 1, Schedule.COSINE, 0.1f, 0.9f, 0.95f, 1e-8f, 1f,
        false, 0);
  }

  @Test
  void everyStageRunsOneForwardPerMicroBatchAndKeepsTheMicroBatchesInFlight(@TempDir Path tmp) throws Exception {
    Path data = TrainerTest.shard(tmp);
    for (ModelConfig cfg : List.of(LLAMA, GPT2)) {
      StageRun one = wholeModel(cfg, data);
      for (int pp : new int[] {2, 3}) {
        for (boolean recompute : new boolean[] {false, true}) {
          String what = cfg.family() + " pp " + pp + (recompute ? " --recompute" : "");
          List<StageRun> stages = pipeline(cfg, data, pp, recompute);
          for (int s = 0; s < pp; s++) check(one, stages.get(s), Math.min(pp - s, MICRO), what + ": stage " + s);
        }
      }
    }
  }

  private static void check(StageRun one, StageRun r, int sets, String what) {
    assertArrayEquals(new int[] {MICRO, MICRO, MICRO}, r.forwards(), what + "'s forwards per step");
    assertEquals(sets, r.sets(), what + "'s activation sets");
    assertArrayEquals(one.losses(), r.losses(), what + "'s losses vs one process with --accum 4");
    assertArrayEquals(one.norms(), r.norms(), what + "'s norms");
    for (var e : r.weights().entrySet()) assertArrayEquals(one.weights().get(e.getKey()), e.getValue(), what + ": " + e.getKey());
  }

  @Test
  void activationSetsAreCheckedAndFollowTheSchedule() {
    assertEquals(3, PipelineStage.activationSets(0, 3, 8));
    assertEquals(1, PipelineStage.activationSets(2, 3, 8));
    assertEquals(2, PipelineStage.activationSets(0, 4, 2));
    assertThrows(IllegalArgumentException.class, () -> PipelineStage.activationSets(3, 3, 2));
    try (Transformer m = new Transformer(LLAMA, Device.CPU, DType.F32)) {
      assertThrows(IllegalArgumentException.class, () -> m.setActivationSets(0));
      m.setActivationSets(2);
      assertThrows(IllegalArgumentException.class, () -> m.activationSet(2));
    }
  }

  private static StageRun wholeModel(ModelConfig cfg, Path data) {
    try (TokenDataset d = TokenDataset.open(data); Transformer m = Transformer.create(cfg, Device.CPU);
        Trainer t = new Trainer(m, config(), new DataLoader(d, BATCH, SEQ, false, 0))) {
      m.initialize(8);
      float[] losses = new float[STEPS], norms = new float[STEPS];
      for (int s = 0; s < STEPS; s++) {
        var r = t.step();
        losses[s] = r.loss();
        norms[s] = r.gradNorm();
      }
      return new StageRun(new int[0], 1, losses, norms, masters(m));
    }
  }

  private static List<StageRun> pipeline(ModelConfig cfg, Path data, int pp, boolean recompute) throws Exception {
    PipelineLayout layout = new PipelineLayout(cfg, pp);
    ThreadRanks ranks = new ThreadRanks(pp);
    ExecutorService pool = Executors.newFixedThreadPool(pp);
    try {
      List<Future<StageRun>> runs = new ArrayList<>();
      for (int s = 0; s < pp; s++) {
        int stage = s;
        runs.add(pool.submit(() -> {
          try (TokenDataset d = TokenDataset.open(data);
              Transformer m = new Transformer(cfg, Device.CPU, DType.F32, layout.stage(stage));
              Trainer t = new Trainer(m, config(), new DataLoader(d, BATCH, SEQ, false, 0))) {
            m.initialize(8);
            m.setRecompute(recompute);
            PipelineStage ps = new PipelineStage(ranks.member(stage), layout, m);
            ps.attach(t);
            int[] forwards = new int[STEPS];
            float[] losses = new float[STEPS], norms = new float[STEPS];
            for (int s2 = 0; s2 < STEPS; s2++) {
              var r = t.step();
              forwards[s2] = ps.forwardsLastStep();
              losses[s2] = r.loss();
              norms[s2] = r.gradNorm();
            }
            return new StageRun(forwards, m.activationSets(), losses, norms, masters(m));
          }
        }));
      }
      List<StageRun> out = new ArrayList<>();
      for (Future<StageRun> f : runs) out.add(f.get(120, TimeUnit.SECONDS));
      return out;
    } finally {
      pool.shutdownNow();
    }
  }

  private static Map<String, float[]> masters(Transformer m) {
    Map<String, float[]> w = new java.util.LinkedHashMap<>();
    m.weights().forEach((k, v) -> w.put(k, v.toFloatArray()));
    return w;
  }
}
