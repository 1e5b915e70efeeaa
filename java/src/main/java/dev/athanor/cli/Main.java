package dev.athanor.cli;

import java.io.PrintStream;
import java.util.Arrays;
import java.util.List;

/**
 * The {@code athanor} command line: {@code demo}, {@code train}, {@code generate}, {@code score},
 * {@code info} and {@code help}.
 */
public final class Main {
  private Main() {}

  public static void main(String[] args) {
    System.exit(run(args, System.out, System.err));
  }

  /** Runs one command and returns the process exit code (0 success, 1 failure, 2 usage error). */
  public static int run(String[] args, PrintStream out, PrintStream err) {
    String command = args.length == 0 ? "help" : args[0];
    List<String> rest = Arrays.asList(args).subList(Math.min(1, args.length), args.length);
    try {
      switch (command) {
        case "info" -> {
          InfoCommand.run(rest, out);
          return 0;
        }
        case "demo" -> {
          DemoCommand.run(rest, out);
          return 0;
        }
        case "train" -> {
          TrainCommand.run(rest, out);
          return 0;
        }
        case "generate" -> {
          GenerateCommand.run(rest, out);
          return 0;
        }
        case "bench" -> {
          BenchCommand.run(rest, out);
          return 0;
        }
        case "score" -> {
          ScoreCommand.run(rest, out);
          return 0;
        }
        case "help", "-h", "--help" -> {
          usage(out);
          return 0;
        }
        default -> {
          err.println("athanor: unknown command '" + command + "'");
          usage(err);
          return 2;
        }
      }
    } catch (IllegalArgumentException e) {
      err.println("athanor " + command + ": " + e.getMessage());
      return 2;
    } catch (RuntimeException e) {
      err.println("athanor " + command + ": " + e.getMessage());
      if (Boolean.getBoolean("athanor.debug")) e.printStackTrace(err);
      return 1;
    }
  }

  static void usage(PrintStream out) {
    out.println("""
        usage: athanor <command> [options]

        commands:
          demo       train a small GPT on the JDK's own Java sources for a few minutes, plot, sample
                     [--steps N] [--device cpu|cuda[:n]] [--out DIR] [--data PATH] [--prompt TEXT]
          train      train a model: --data PATH (text file, directory, .zip, or llm.c .bin shards)
                     model: --preset NAME (gpt2, gpt2-medium, gpt2-tiny, llama-tiny, ...) | --model HF_DIR | --config FILE
                     --steps --batch --seq --accum --lr --min-lr --warmup --schedule constant|cosine
                     --weight-decay --beta1 --beta2 --eps --grad-clip --shuffle true|false --seed
                     --device cpu|cuda[:n] --out DIR (HF model dir) --log FILE (JSON lines; plot next to it)
                     --max-bytes N (tokenize at most N bytes of text) --recompute --save-dtype F32|BF16 --threads N
                     checkpoints: --checkpoint-dir DIR --checkpoint-every N --keep K --resume DIR|auto --checkpoint-sync
          generate   --model DIR --prompt TEXT [--max-tokens N --temperature T --top-k K --top-p P --seed S --no-stop]
          score      --model DIR (--tokens FILE | --text TEXT): per-token log-probabilities and mean loss as JSON
          bench      model throughput on random tokens as JSON: --mode train|decode|overlap, --preset/--config,
                     --batch --seq --steps --warmup-steps --device --threads --prompt-len --decode-tokens
                     (decode: --steps timed rounds after --warmup-steps untimed ones; prefill and per-token medians)
                     --mode overlap: host->device copies on a copy stream behind GEMMs, vs serialized
                     [--chunks K --chunk-mib M --gemm N --dtype f32|bf16|f16 --repeats R --warmup W --json PATH]
          info       [--json] backends, devices, CPU features, kernels available, memory tiers
          help       this text

        (the launcher also takes: ./athanor test — the whole test suite; ./athanor build)""");
  }
}
