package dev.athanor.cli;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TextCorpus;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.io.hf.HfModelDir;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.train.Schedule;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import dev.athanor.train.checkpoint.Checkpoint;
import dev.athanor.train.checkpoint.CheckpointEvent;
import dev.athanor.train.checkpoint.CheckpointManager;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * {@code athanor train}: train a model from a preset, a config.json or a Hugging Face directory on text or
 * token shards, with a progress bar, a JSON-lines log, charts, a run report and an HF-format model at the end.
 */
final class TrainCommand {
  static final Set<String> FLAGS = Set.of("model", "config", "preset", "context", "data", "steps", "batch", "seq", "lr",
      "min-lr", "warmup", "schedule", "weight-decay", "beta1", "beta2", "eps", "grad-clip", "accum", "shuffle", "seed",
      "device", "out", "log", "max-bytes", "recompute", "save-dtype", "checkpoint-dir", "checkpoint-every", "keep", "resume",
      "checkpoint-sync", "threads");

  private TrainCommand() {}

  /** What a run produced. */
  record Result(Path modelDir, Path log, Path plot, Path report, float firstLoss, float lastLoss, double tokensPerSecond,
      long steps) {}

  static Result run(List<String> args, PrintStream out) {
    Flags f = new Flags("train", args, FLAGS, Set.of("recompute", "checkpoint-sync"));
    Device device = Models.device(f.str("device", "auto"));
    Models.cpuThreads(f);
    Path ckptDir = f.path("checkpoint-dir", null);
    Checkpoint resume = resumeFrom(f, ckptDir, out);
    // resuming always restores through the checkpoint manager; without --checkpoint-dir, continue in the resumed set
    if (resume != null && ckptDir == null) ckptDir = resume.directory().toAbsolutePath().getParent();
    ModelConfig mc = resume != null ? resume.modelConfig() : Models.config(f);
    if (resume != null && (f.has("model") || f.has("config") || f.has("preset") || f.has("context"))) {
      ModelConfig asked = Models.config(f);
      if (!asked.equals(mc)) {
        throw new IllegalArgumentException("--resume: checkpoint " + resume.directory() + " was taken with a different model: "
            + "saved " + mc + ", this run " + asked);
      }
    }
    Path modelDir = f.path("model", null);
    Path data = Path.of(f.required("data"));
    if (!Files.exists(data)) throw new IllegalArgumentException("--data " + data + " does not exist");
    int steps = f.integer("steps", 1000);
    int batch = f.integer("batch", 8);
    int seq = f.integer("seq", Math.min(256, mc.maxSeqLen()));
    TrainConfig d = TrainConfig.defaults(Math.max(1, steps), Math.max(1, batch), Math.max(1, seq));
    TrainConfig tc = new TrainConfig(steps, batch, seq, f.integer("accum", 1), f.number("lr", d.lr()),
        f.number("min-lr", f.has("lr") ? f.number("lr", d.lr()) / 10 : d.minLr()), f.integer("warmup", d.warmup()),
        Schedule.parse(f.str("schedule", "cosine")), f.number("weight-decay", d.weightDecay()), f.number("beta1", d.beta1()),
        f.number("beta2", d.beta2()), f.number("eps", d.eps()), f.number("grad-clip", d.gradClip()),
        f.bool("shuffle", false), f.longValue("seed", d.seed()));
    Path outDir = f.path("out", Path.of("runs", "train"));
    Path log = f.path("log", outDir.resolve("train-log.jsonl"));
    String sd = f.str("save-dtype", "F32").toUpperCase(Locale.ROOT);
    if (!List.of("F32", "BF16", "F16").contains(sd)) {
      throw new IllegalArgumentException("--save-dtype must be F32, BF16 or F16, got '" + f.str("save-dtype", "") + "'");
    }
    DType saveDtype = DType.valueOf(sd);

    out.printf("athanor train: %s model, %d layers, hidden %d, %d heads, vocab %d, %.1fM parameters, on %s%n",
        mc.family().hfModelType(), mc.layers(), mc.hidden(), mc.heads(), mc.vocabSize(), mc.parameterCount() / 1e6, device);
    try (Transformer model = modelDir != null && resume == null ? Models.load(modelDir, device) : Transformer.create(mc, device)) {
      if (modelDir == null && resume == null) model.initialize(tc.seed());
      model.setRecompute(f.bool("recompute", false));
      Tokenizer tok = TextCorpus.isShardInput(data) ? null : Models.tokenizer(modelDir, model.config());
      TextCorpus.Options opts = TextCorpus.Options.defaults();
      if (f.has("max-bytes")) {
        opts = new TextCorpus.Options(opts.cacheDir(), f.longValue("max-bytes", 0), opts.extensions(), opts.threads(),
            opts.shardTokens());
      }
      TokenDataset dataset;
      try (ProgressBar bar = ProgressBar.create("tokenize", 0)) {
        TextCorpus.ProgressListener pl = (done, total, tokens) -> bar.update(done,
            ProgressBar.formatCount(tokens) + " tokens" + (total > 0 ? " of ~" + ProgressBar.formatCount(total) + " B" : ""));
        dataset = tok == null ? TokenDataset.open(data) : TextCorpus.prepare(data, tok, opts, pl);
      }
      try (dataset) {
        dataset.checkVocab(model.config().vocabSize());
        out.printf("data: %s tokens from %s; %d steps x %d tokens (batch %d, seq %d, accum %d), lr %s %s, warmup %d%n",
            ProgressBar.formatCount(dataset.size()), data, tc.steps(), tc.tokensPerStep(), tc.batch(), tc.seq(), tc.accum(),
            tc.lr(), tc.schedule().name().toLowerCase(Locale.ROOT), tc.warmup());
        DataLoader loader = new DataLoader(dataset, tc.batch(), tc.seq(), tc.shuffle(), tc.seed());
        int every = f.integer("checkpoint-every", ckptDir != null ? 100 : 0);
        if (every < 0) throw new IllegalArgumentException("--checkpoint-every must be >= 0, got " + every);
        if (every > 0 && ckptDir == null) throw new IllegalArgumentException("--checkpoint-every needs --checkpoint-dir");
        Checkpointing ck = ckptDir == null ? null
            : new Checkpointing(ckptDir, every, f.integer("keep", 3), !f.bool("checkpoint-sync", false), resume, args);
        List<StepResult> results = trainLoop(model, tc, loader, log, ck, out);
        Files.createDirectories(outDir);
        HfModelDir.save(outDir, model.config(), model.weights(), saveDtype);
        Models.copyTokenizerFiles(modelDir, outDir);
        RunOutputs written = RunOutputs.write(log, results, model.config(), tc, device, data, dataset.size(), outDir, args,
            ck == null ? List.of() : ck.events(), System.err);
        StepResult first = results.get(0), last = results.get(results.size() - 1);
        double tps = meanTokensPerSecond(results);
        out.printf("loss %.4f -> %.4f over %d steps, %s tokens/s; model saved to %s, log %s%s%n", first.loss(), last.loss(),
            results.size(), ProgressBar.formatRate(tps), outDir, log,
            written.report() != null ? ", report " + written.report() : "");
        return new Result(outDir, log, written.lossPlot(), written.report(), first.loss(), last.loss(), tps, results.size());
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /**
   * Checkpoint settings of a run: where, how often, how many to keep, async or not, and what it resumes from; the
   * saves of the run are added to {@code events} (for the report).
   */
  record Checkpointing(Path dir, int every, int keep, boolean async, Checkpoint resume, List<String> args,
      List<CheckpointEvent> events) {
    Checkpointing(Path dir, int every, int keep, boolean async, Checkpoint resume, List<String> args) {
      this(dir, every, keep, async, resume, args, new ArrayList<>());
    }
  }

  /** The checkpoint named by --resume (a checkpoint, a directory of them, or "auto" = the newest valid in --checkpoint-dir). */
  static Checkpoint resumeFrom(Flags f, Path ckptDir, PrintStream out) {
    if (!f.has("resume")) return null;
    String r = f.str("resume", "");
    Path where = r.equals("auto") ? ckptDir : Path.of(r);
    if (where == null) throw new IllegalArgumentException("--resume auto needs --checkpoint-dir");
    Checkpoint c = Files.isRegularFile(where.resolve("manifest.json")) ? Checkpoint.open(where)
        : CheckpointManager.latestValid(where, msg -> out.println("athanor train: " + msg)).orElse(null);
    if (c == null) {
      if (r.equals("auto")) {
        out.println("athanor train: no valid checkpoint in " + where + "; starting from scratch");
        return null;
      }
      throw new IllegalArgumentException("--resume " + r + ": no valid checkpoint there");
    }
    out.println("athanor train: resuming from " + c.directory() + " (step " + c.step() + ")");
    return c;
  }

  /**
   * The step loop: progress bar with loss, tokens/s and ETA; one JSON line per step in {@code log}; periodic
   * checkpoints; on a failure or SIGTERM the last consistent state is saved before the error propagates.
   */
  static List<StepResult> trainLoop(Transformer model, TrainConfig tc, DataLoader loader, Path log, Checkpointing ck,
      PrintStream out) throws IOException {
    List<StepResult> results = new ArrayList<>();
    if (log.getParent() != null) Files.createDirectories(log.getParent());
    List<String> kept = new ArrayList<>();
    if (ck != null && ck.resume() != null && Files.isRegularFile(log)) {
      // keep the log of the steps before the checkpoint; the rest is redone
      for (String line : Files.readAllLines(log, StandardCharsets.UTF_8)) {
        int i = line.indexOf("\"step\":");
        int end = i < 0 ? -1 : line.indexOf(',', i);
        if (end < 0 || !line.endsWith("}")) continue;  // not a step line, or cut short by a crash
        long st;
        try {
          st = Long.parseLong(line.substring(i + 7, end));
        } catch (NumberFormatException e) {
          continue;
        }
        if (st < ck.resume().step()) kept.add(line);
      }
    }
    AtomicBoolean stop = new AtomicBoolean();
    CountDownLatch finished = new CountDownLatch(1);
    Thread hook = new Thread(() -> {
      stop.set(true);
      try {
        finished.await(120, TimeUnit.SECONDS);
      } catch (InterruptedException ignored) {
        Thread.currentThread().interrupt();
      }
    }, "athanor-sigterm");
    try (CheckpointManager mgr = ck == null ? null : new CheckpointManager(ck.dir(), ck.keep(), ck.async());
        Trainer trainer = new Trainer(model, tc, loader)) {
      if (ck != null && ck.resume() != null) ck.resume().restore(trainer);
      if (mgr != null) mgr.prepare(trainer);  // host buffers for the first snapshot, allocated in the background
      if (mgr != null) Runtime.getRuntime().addShutdownHook(hook);
      try (BufferedWriter w = Files.newBufferedWriter(log, StandardCharsets.UTF_8);
          ProgressBar bar = ProgressBar.create("train", tc.steps())) {
        for (String line : kept) {
          w.write(line);
          w.newLine();
        }
        w.flush();
        bar.update(trainer.nextStep(), "");
        double ema = Double.NaN, stall = 0;
        while (!trainer.done() && !stop.get()) {
          StepResult r;
          try {
            r = trainer.step();
          } catch (RuntimeException e) {
            throw saveOnFailure(e, trainer, mgr, ck, bar);
          } catch (OutOfMemoryError e) {  // Java heap: the model's native memory is intact, so the state can be saved
            throw saveOnFailure(new IllegalStateException("out of Java heap memory: " + e.getMessage(), e), trainer, mgr, ck, bar);
          }
          results.add(r);
          w.write(r.toJson());
          w.newLine();
          w.flush();
          if (mgr != null && ck.every() > 0 && trainer.nextStep() % ck.every() == 0 && !trainer.done()) {
            stall = mgr.save(trainer);
          }
          ema = Double.isNaN(ema) ? r.loss() : 0.9 * ema + 0.1 * r.loss();
          bar.update(r.step() + 1, String.format(Locale.ROOT, "loss %.3f (avg %.3f) | %s tok/s%s", r.loss(), ema,
              ProgressBar.formatRate(r.tokensPerSecond()), stall > 0 ? String.format(Locale.ROOT, " | ckpt %.0f ms", stall * 1e3) : ""));
        }
        if (mgr != null) {
          mgr.save(trainer);
          Path last = mgr.awaitWrite().orElseThrow();
          ck.events().addAll(mgr.events());
          if (stop.get()) {
            bar.message("stopped by a termination signal at step " + trainer.nextStep() + "; state saved to " + last
                + "; resume with: athanor train " + String.join(" ", resumeArgs(ck)));
          }
        }
      }
      if (stop.get()) throw new IllegalStateException("training stopped by a termination signal (state saved)");
    } finally {
      finished.countDown();
      if (ck != null) {
        try {
          Runtime.getRuntime().removeShutdownHook(hook);
        } catch (IllegalStateException | IllegalArgumentException ignored) {
          // the JVM is already shutting down, or the hook was never added
        }
      }
    }
    if (results.isEmpty()) throw new IllegalStateException("no step was run (the checkpoint is already at step " + tc.steps() + ")");
    return results;
  }

  /** Saves the last consistent state after a failed step (when checkpointing) and returns the exception to throw. */
  private static RuntimeException saveOnFailure(RuntimeException e, Trainer trainer, CheckpointManager mgr, Checkpointing ck,
      ProgressBar bar) {
    if (mgr == null) return e;
    try {
      mgr.awaitWrite();
      mgr.save(trainer);
      Path saved = mgr.awaitWrite().orElseThrow();
      return new IllegalStateException("training failed at step " + trainer.nextStep() + ": " + e.getMessage()
          + "; the last consistent state was saved to " + saved + "; resume with: athanor train "
          + String.join(" ", resumeArgs(ck)), e);
    } catch (RuntimeException saveFailure) {
      e.addSuppressed(saveFailure);
      bar.message("could not save the state after the failure: " + saveFailure.getMessage());
      return e;
    }
  }

  /** The same command line with --resume auto (and --checkpoint-dir, when the run got it from --resume DIR). */
  static List<String> resumeArgs(Checkpointing ck) {
    List<String> args = ck.args();
    List<String> r = new ArrayList<>();
    for (int i = 0; i < args.size(); i++) {
      String a = args.get(i);
      if (a.equals("--resume")) {
        i++;
        continue;
      }
      if (a.startsWith("--resume=")) continue;
      r.add(a.contains(" ") ? "'" + a + "'" : a);
    }
    if (r.stream().noneMatch(a -> a.equals("--checkpoint-dir") || a.startsWith("--checkpoint-dir="))) {
      String d = ck.dir().toString();
      r.add("--checkpoint-dir");
      r.add(d.contains(" ") ? "'" + d + "'" : d);
    }
    r.add("--resume");
    r.add("auto");
    return r;
  }

  /** Tokens per second over all steps but the first (which includes one-time allocation). */
  static double meanTokensPerSecond(List<StepResult> rs) {
    double tokens = 0, secs = 0;
    for (int i = rs.size() > 1 ? 1 : 0; i < rs.size(); i++) {
      tokens += rs.get(i).tokens();
      secs += rs.get(i).seconds();
    }
    return secs > 0 ? tokens / secs : 0;
  }
}
