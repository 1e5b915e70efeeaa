package dev.athanor.dist.pipeline;

import dev.athanor.dist.Communicator;
import dev.athanor.dist.DataParallel;
import dev.athanor.dist.DataTensorParallel;
import dev.athanor.dist.TensorParallelism;
import dev.athanor.io.data.DataLoader;
import dev.athanor.nn.Stage;
import dev.athanor.nn.TensorParallel;
import dev.athanor.nn.Transformer;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.GradientReducer;
import dev.athanor.train.Trainer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * This process's stage of a pipeline: a {@link Trainer}'s micro-batch phase (the {@link OneFOneB} schedule, hidden
 * states (B×T, C) and their gradients sent to and received from the neighbouring stages of {@code comm}, the pipeline
 * group, whose rank is the stage) and its gradient reducer (tied embeddings, the global norm, the losses).
 *
 * <p>Exactness against one process with {@code accum = M} over the same micro-batches:
 * <ul>
 *   <li>every stage reads every micro-batch from its own loader (same data, same order) and uses what it needs;
 *   <li>each stage forms micro-batch {@code i}'s gradient from zero and accumulates it with {@link Trainer#accumulate}
 *       in micro-batch order (backwards run in order in 1F1B), so each parameter sees the one process's operations;
 *   <li>the model keeps one set of activations per micro-batch in flight ({@link #activationSets}: {@code min(pp - s,
 *       M)} on stage {@code s}, {@link Transformer#setActivationSets}), so each backward reads what its own forward
 *       saved and no forward is rerun (with {@code --recompute} a set is the blocks' inputs);
 *   <li>tied embeddings: one process adds the head's gradient and the embedding's ({@code head_i + emb_i}) per
 *       micro-batch, then accumulates. The first stage keeps each {@code emb_i}, the last each {@code head_i}; after the
 *       schedule the last sends its {@code head_i} to the first, which forms the accumulated gradient exactly so and
 *       sends it back: both copies hold the same bits, and AdamW updates them identically;
 *   <li>the global norm: one process sums squares per {@link Ops#NORM_CHUNK} chunk of its flat gradient, then adds
 *       the partials in double in order. A stage's parameters are a contiguous range of that flat layout ({@link
 *       PipelineLayout#wholeRange}); each chunk is summed by the stage holding its first element, after the stages
 *       holding the rest of it sent their pieces, and the partials (zeros elsewhere) are summed over the group.
 * </ul>
 *
 * <p>ZeRO 2 over the dp group (a trainer with a sharded gradient): after each backward the stage's micro-batch gradient
 * is reduce-scattered over the dp group into the stage's shard ({@link DataParallel#accumulateShard}), the one
 * process's fold over {@code M × dp} micro-batches. Tied embeddings: the last stage sends each {@code head_i} to the
 * first as soon as it sent micro-batch {@code i}'s input gradient, the first folds {@code head_i + emb_i}, and after the
 * schedule the last stage's shards take the first's folded embedding gradient. The norm ({@link #shardedNorm}) puts
 * each chunk of the whole layout together from the shards of every stage.
 *
 * <p>Tensor parallel stages (a {@code tp} group of the {@link dev.athanor.dist.ParallelGrid}): each rank of a stage
 * holds its {@link TensorParallel} part of the stage's blocks (the embedding and the head replicated) and the blocks'
 * sums run over the stage's tp group. The hidden states and their gradients at the stage boundaries are the same on
 * every tp rank of a stage, so rank {@code t} of stage {@code s} exchanges them with rank {@code t} of stages {@code s ±
 * 1} (the pipeline group). With sequence parallelism ({@link Transformer#setSequenceParallel}) each tp rank of a stage
 * holds only its token rows of the residual stream at the boundaries, and sends (and receives) just those: the same
 * rows, the same bits, 1/tp of the bytes. The result equals tensor parallel alone ({@link TensorParallelism}) with {@code accum = M},
 * bit for bit: the same products and sums per block, and the norm formed from the same terms ({@link
 * TensorParallelism#squaredSums}: per parameter, split ones summed over the tp group) put together over the stages and
 * added in the same order.
 */
public final class PipelineStage implements Trainer.MicroBatchRunner, GradientReducer {
  private final Communicator comm;
  private final Communicator dp;  // the same stage of the other pipelines, or null
  private final Communicator tp;  // the tensor-parallel ranks of this stage, or null
  private final TensorParallelism tensor;  // the tensor-parallel norm over tp, or null
  private DataParallel replicas;  // data parallel over dp (set by attach), or null
  private Range gradShard;  // ZeRO 2: this rank's shard of the stage's flat gradient (set by attach), or null
  private final PipelineLayout layout;
  private final Transformer model;
  private final int stage;
  private final boolean first;
  private final boolean last;
  private final boolean tied;  // the first and the last stage both hold the token embedding
  private final List<Tensor> tiedPieces = new ArrayList<>();  // emb_i (first stage) or head_i (last stage), this step
  private float[] losses = new float[0];
  private int forwards;  // forwards run by the last step's schedule

  /** A stage of a single pipeline. */
  public PipelineStage(Communicator comm, PipelineLayout layout, Transformer model) {
    this(comm, null, layout, model);
  }

  /**
   * A stage of one of several data-parallel pipelines: {@code dp} joins this stage with the same stage of the other
   * pipelines (a {@link dev.athanor.dist.ParallelGrid} dp group; null or size 1: one pipeline). Each pipeline reads its
   * replica's micro-batches ({@link DataLoader#setReplica}) and the stage's gradient is summed over {@code dp} after
   * the pipeline's own reduction, as {@link DataParallel} sums a whole model's: the result is that of {@code dp}
   * processes of the whole model with {@code accum M} each, bit for bit.
   */
  public PipelineStage(Communicator comm, Communicator dp, PipelineLayout layout, Transformer model) {
    this(comm, dp, null, layout, model);
  }

  /**
   * A stage whose blocks are split over the tensor-parallel group {@code tp} (null or size 1: not split), with {@code
   * model} this rank's part ({@link TensorParallelism#create(dev.athanor.nn.ModelConfig, dev.athanor.runtime.Device,
   * Communicator, Stage)}); otherwise as {@link #PipelineStage(Communicator, Communicator, PipelineLayout, Transformer)}.
   */
  public PipelineStage(Communicator comm, Communicator dp, Communicator tp, PipelineLayout layout, Transformer model) {
    this.comm = Objects.requireNonNull(comm, "comm");
    this.dp = dp == null || dp.size() == 1 ? null : dp;
    this.tp = tp == null || tp.size() == 1 ? null : tp;
    this.layout = Objects.requireNonNull(layout, "layout");
    this.model = Objects.requireNonNull(model, "model");
    TensorParallel part = this.tp == null ? TensorParallel.NONE : TensorParallelism.of(this.tp);
    if (!model.tensorParallel().equals(part)) {
      throw new IllegalArgumentException("the stage's tensor-parallel group makes this rank " + part + " but the model is "
          + model.tensorParallel());
    }
    this.tensor = this.tp == null ? null : new TensorParallelism(this.tp, layout.config());
    if (comm.size() != layout.stages()) {
      throw new IllegalArgumentException("the pipeline group has " + comm.size() + " processes but the layout " + layout.stages()
          + " stages");
    }
    this.stage = comm.rank();
    if (!model.stage().equals(layout.stage(stage))) {
      throw new IllegalArgumentException("stage " + stage + " is " + layout.stage(stage) + " but the model holds " + model.stage());
    }
    this.first = stage == 0;
    this.last = stage == layout.stages() - 1;
    this.tied = layout.stages() > 1 && layout.config().tiedEmbeddings();
  }

  /** Makes {@code trainer} (of this stage's model, with {@code accum} = the micro-batches) run this pipeline stage. */
  public void attach(Trainer trainer) {
    if (trainer.model() != model) throw new IllegalArgumentException("the trainer trains another model than this stage's");
    if (dp != null) {
      Range shard = trainer.optimizer().shard();
      if (shard != null && !shard.equals(DataParallel.optimizerShard(model.parameters(), dp))) {
        throw new IllegalArgumentException("the trainer's optimizer shard " + shard + " is not dp rank " + dp.rank()
            + "'s part " + DataParallel.optimizerShard(model.parameters(), dp) + " of the stage's parameters");
      }
      replicas = new DataParallel(dp, shard != null);  // ZeRO 1 over the dp group: each updates its part of the stage
      trainer.data().setReplica(dp.rank(), dp.size());
      gradShard = trainer.gradientShard() != null ? shard : null;  // ZeRO 2: and keeps its part of the gradient
    } else if (trainer.gradientShard() != null) {
      throw new IllegalArgumentException("the trainer shards its gradient (ZeRO 2) but the stage has no data-parallel group");
    }
    trainer.setMicroBatchRunner(this);
    trainer.setGradientReducer(this);
  }

  // ------------------------------------------------------------------ the schedule

  @Override
  public float[] run(Trainer trainer, float lossScale) {
    int m = trainer.config().accum();
    List<DataLoader.Batch> batches = new ArrayList<>(m);
    for (int i = 0; i < m; i++) batches.add(trainer.data().next());
    DataLoader.Batch shape = batches.get(0);
    // the hidden states at the stage boundaries: all B*T rows, or (sequence parallel) this tp rank's token rows
    long[] hidden = {model.boundaryRows(shape.batch(), shape.seq()), layout.config().hidden()};
    DType dt = model.computeDtype();
    Map<Integer, Tensor> inputs = new HashMap<>();  // received inputs of the micro-batches in flight
    Tensor grad = null;  // the received gradient of the next backward's output
    losses = new float[m];
    clearTiedPieces();
    ParameterStore store = model.parameters();
    int sets = activationSets(stage, layout.stages(), m);
    model.setActivationSets(sets);  // micro-batch i in set i % sets: the ones in flight are consecutive, at most sets
    forwards = 0;
    try {
      for (OneFOneB.Op op : OneFOneB.schedule(stage, layout.stages(), m)) {
        int i = op.micro();
        switch (op.kind()) {
          case RECV_INPUT -> inputs.put(i, received(hidden, dt, stage - 1));
          case FORWARD -> {
            model.activationSet(i % sets);
            forward(batches.get(i), inputs.get(i), i);
          }
          case SEND_OUTPUT -> comm.send(model.output(), stage + 1);
          case SEND_OUTPUT_RECV_GRAD -> {
            if (grad == null) grad = Tensor.empty(dt, Device.CPU, hidden);
            exchange(model.output(), stage + 1, grad);
          }
          case RECV_GRAD -> {
            if (grad == null) grad = Tensor.empty(dt, Device.CPU, hidden);
            comm.recv(grad, stage + 1);
          }
          case BACKWARD -> {
            model.activationSet(i % sets);  // the activations micro-batch i's forward kept
            store.zero(Role.GRAD);
            if (last) {
              model.backward(lossScale);
            } else {
              model.backward(grad);
            }
            if (tied && gradShard != null && first) {
              addHeadGradient(store.view(Role.GRAD, embedding()));  // head_i + emb_i, as one process's micro-batch
            } else if (tied && (first || last)) {
              keepTiedPiece(store.view(Role.GRAD, embedding()));
            }
            trainer.accumulate(i);
          }
          case SEND_GRAD -> {
            comm.send(model.inputGradient(), stage - 1);
            close(inputs.remove(i));
            sendHeadGradient();
          }
          case SEND_GRAD_RECV_INPUT -> {
            Tensor in = Tensor.empty(dt, Device.CPU, hidden);
            try {
              exchange(model.inputGradient(), stage - 1, in);
            } catch (RuntimeException e) {
              in.close();
              throw e;
            }
            close(inputs.remove(i));
            inputs.put(op.other(), in);
            sendHeadGradient();
          }
        }
      }
      if (tied && gradShard != null) copyTiedShard(store, trainer.gradientShard());
    } finally {
      inputs.values().forEach(PipelineStage::close);
      close(grad);
    }
    return last ? losses.clone() : new float[m];
  }

  /**
   * The activation sets stage {@code stage} of {@code stages} keeps over {@code micro} micro-batches: the micro-batches
   * in flight under 1F1B, {@code min(stages - stage, micro)} (its warm-up forwards and the one of the steady phase).
   */
  public static int activationSets(int stage, int stages, int micro) {
    if (stages < 1 || stage < 0 || stage >= stages) throw new IllegalArgumentException("stage " + stage + " of " + stages);
    if (micro < 1) throw new IllegalArgumentException("micro-batches " + micro + " must be >= 1");
    return Math.min(stages - stage, micro);
  }

  /** The forwards the last step's schedule ran on this stage: one per micro-batch (none is rerun). */
  public int forwardsLastStep() {
    return forwards;
  }

  private void forward(DataLoader.Batch b, Tensor input, int i) {
    forwards++;
    int[] targets = last ? b.targets() : null;
    float loss = first ? model.forward(b.inputs(), targets, b.batch(), b.seq()) : model.forward(input, targets, b.batch(), b.seq());
    if (last) losses[i] = loss;
  }

  private Tensor received(long[] shape, DType dt, int from) {
    Tensor t = Tensor.empty(dt, Device.CPU, shape);
    try {
      comm.recv(t, from);
      return t;
    } catch (RuntimeException e) {
      t.close();
      throw e;
    }
  }

  /**
   * Sends {@code out} to the neighbour {@code peer} and receives {@code in} from it, which does the same at the same
   * point of its schedule: the lower stage sends first, the higher receives first, so blocking calls never wait on
   * each other.
   */
  private void exchange(Tensor out, int peer, Tensor in) {
    if (stage < peer) {
      comm.send(out, peer);
      comm.recv(in, peer);
    } else {
      comm.recv(in, peer);
      comm.send(out, peer);
    }
  }

  private static void close(Tensor t) {
    if (t != null) t.close();
  }

  /**
   * ZeRO 2, the last stage of a tied model: sends the head's gradient {@code head_i} of the micro-batch whose input
   * gradient just left to the first stage, which adds it before it folds micro-batch {@code i} into its shard (its
   * backward of {@code i} comes after this one's, and every message it waits for until then was sent before this).
   */
  private void sendHeadGradient() {
    if (!tied || gradShard == null || !last) return;
    try {
      for (Tensor head : tiedPieces) comm.send(head, 0);
    } finally {
      clearTiedPieces();
    }
  }

  /** ZeRO 2, the first stage of a tied model: {@code emb} += the last stage's {@code head_i} (as {@code head + emb}). */
  private void addHeadGradient(Tensor emb) {
    try (Tensor head = Tensor.empty(emb.dtype(), Device.CPU, emb.shape())) {
      comm.recv(head, layout.stages() - 1);
      Ops.add(head, emb, emb);
    }
  }

  /**
   * ZeRO 2 with tied embeddings, after the schedule: the first stage's shards hold the embedding's folded gradient (each
   * micro-batch's {@code head_i + emb_i}); its dp group gathers it whole and sends it to the last stage, whose ranks
   * copy their shards' parts of it over the head-only sums they folded, so both copies get the same bits.
   */
  private void copyTiedShard(ParameterStore store, Tensor shardGrad) {
    if (!(first || last)) return;
    Range emb = store.get(embedding()).range();
    try (Tensor whole = Tensor.empty(DType.F32, Device.CPU, emb.length())) {
      if (first) {
        long n = store.numel();
        long[] counts = new long[dp.size()];
        for (int r = 0; r < counts.length; r++) {
          counts[r] = emb.intersect(new Range(Communicator.partStart(n, r, dp.size()), Communicator.partStart(n, r + 1,
              dp.size()))).length();
        }
        Range mine = emb.intersect(gradShard);
        long at = 0;
        for (int r = 0; r < dp.rank(); r++) at += counts[r];
        try (Tensor part = whole.slice(0, at, at + mine.length())) {
          if (!mine.isEmpty()) {
            try (Tensor src = shardGrad.slice(0, mine.start() - gradShard.start(), mine.end() - gradShard.start())) {
              part.copyFrom(src);
            }
          }
          dp.allGatherV(part, whole, counts);
        }
        comm.send(whole, layout.stages() - 1);
      } else {
        comm.recv(whole, 0);
        Range mine = emb.intersect(gradShard);
        if (mine.isEmpty()) return;
        try (Tensor src = whole.slice(0, mine.start() - emb.start(), mine.end() - emb.start());
            Tensor dst = shardGrad.slice(0, mine.start() - gradShard.start(), mine.end() - gradShard.start())) {
          dst.copyFrom(src);
        }
      }
    }
  }

  private void keepTiedPiece(Tensor grad) {
    Tensor c = Tensor.empty(grad.dtype(), Device.CPU, grad.shape()).detach();
    tiedPieces.add(c);
    c.copyFrom(grad);
  }

  private void clearTiedPieces() {
    tiedPieces.forEach(Tensor::close);
    tiedPieces.clear();
  }

  private String embedding() {
    return layout.config().embeddingName();
  }

  // ------------------------------------------------------------------ the reducer

  /**
   * Tied embeddings: the first stage receives the last stage's {@code head_i}, forms {@code acc = sum over i of
   * (head_i + emb_i)} as one process does, puts it in its step gradient and sends it to the last stage, which puts it
   * in its own.
   */
  @Override
  public void reduce(ParameterStore store, Role gradRole) {
    reduceTied(store, gradRole);
    if (replicas != null) replicas.reduce(store, gradRole);
  }

  /** ZeRO 2: folds this rank's shard of the stage's micro-batch gradient over the dp group into {@code acc}. */
  @Override
  public void accumulateShard(ParameterStore store, Role gradRole, Range shard, Tensor acc, boolean first) {
    if (replicas == null) throw new IllegalStateException("a sharded gradient (ZeRO 2) needs the stage's dp group");
    replicas.accumulateShard(store, gradRole, shard, acc, first);
  }

  /** ZeRO 1 over the dp group: gathers the parts of the stage's parameters the other replicas updated. */
  @Override
  public void afterUpdate(ParameterStore store) {
    if (replicas != null) replicas.afterUpdate(store);
  }

  /** The group of this stage's data-parallel replicas (null: one pipeline): ZeRO 1 shards the stage's optimizer over it. */
  public Communicator dataParallelGroup() {
    return dp;
  }

  @Override
  public int replicas() {
    return replicas == null ? 1 : replicas.replicas();
  }

  private void reduceTied(ParameterStore store, Role gradRole) {
    if (!tied || !(first || last)) return;
    int peer = first ? layout.stages() - 1 : 0;
    try {
      Tensor acc = store.view(gradRole, embedding());
      if (last) {
        for (Tensor head : tiedPieces) comm.send(head, peer);
        comm.recv(acc, peer);
        return;
      }
      try (Tensor head = Tensor.empty(acc.dtype(), Device.CPU, acc.shape())) {
        for (int i = 0; i < tiedPieces.size(); i++) {
          comm.recv(head, peer);
          try (Tensor g = Ops.add(head, tiedPieces.get(i))) {
            if (i == 0) {
              acc.copyFrom(g);
            } else {
              Ops.add(acc, g, acc);
            }
          }
        }
      }
      comm.send(acc, peer);
    } finally {
      clearTiedPieces();
    }
  }

  @Override
  public float gradientNorm(ParameterStore store, Role gradRole) {
    if (tensor != null) return tensorParallelNorm(store, gradRole);
    long total = layout.wholeNumel(), chunk = Ops.NORM_CHUNK;
    int chunks = Math.toIntExact((total + chunk - 1) / chunk);
    Range mine = layout.wholeRange(stage);
    Tensor flat = store.flat(gradRole);
    float[] partials = new float[chunks];
    for (int j = 0; j < chunks; j++) {
      long cs = j * chunk, ce = Math.min(total, cs + chunk);
      int owner = stageAt(cs);
      if (owner == stage && mine.end() >= ce) {  // the whole chunk is here
        try (Tensor piece = flat.slice(0, cs - mine.start(), ce - mine.start())) {
          partials[j] = Ops.sumSquaresPartials(piece)[0];
        }
        continue;
      }
      // the chunk crosses stages: the owner assembles it from every stage's piece, in the layout's order
      try (Tensor whole = owner == stage ? Tensor.empty(flat.dtype(), Device.CPU, ce - cs) : null) {
        for (int t = owner; t < layout.stages(); t++) {
          Range r = layout.wholeRange(t);
          long a = Math.max(cs, r.start()), b = Math.min(ce, r.end());
          if (a >= b) continue;
          if (t == stage) {
            try (Tensor piece = flat.slice(0, a - mine.start(), b - mine.start())) {
              if (owner == stage) {
                try (Tensor dst = whole.slice(0, a - cs, b - cs)) {
                  dst.copyFrom(piece);
                }
              } else {
                comm.send(piece, owner);
              }
            }
          } else if (owner == stage) {
            try (Tensor dst = whole.slice(0, a - cs, b - cs)) {
              comm.recv(dst, t);
            }
          }
        }
        if (owner == stage) partials[j] = Ops.sumSquaresPartials(whole)[0];
      }
    }
    // each partial is non-zero on one stage only: the group's sum is that partial's bits
    try (Tensor p = Tensor.of(partials, chunks)) {
      comm.allReduceSum(p);
      partials = p.toFloatArray();
    }
    double sum = 0;
    for (float x : partials) sum += x;
    return (float) Math.sqrt(sum);
  }

  /**
   * ZeRO 2: the norm of the step's gradient held as shards, one process's bits. Each element of the whole model's flat
   * layout lies on one stage {@code t} ({@link PipelineLayout#wholeRange}) and there in one dp rank's shard of the
   * stage's store; each {@link Ops#NORM_CHUNK} chunk of the whole layout is summed by the rank (stage {@code t0}, dp
   * rank {@code q0}) holding its first element: on each stage the chunk touches, the dp ranks send their pieces to dp
   * rank {@code q0}, which (on another stage than {@code t0}) sends the stage's piece along its pipeline to stage
   * {@code t0}. The partials (each non-zero on one rank) are summed over the dp group and the pipeline and added in
   * double in chunk order, as one process does.
   */
  @Override
  public float shardedNorm(ParameterStore store, Range shard, Tensor grad) {
    if (replicas == null || !shard.equals(gradShard)) {
      throw new IllegalArgumentException("gradient shard " + shard + " is not this stage's dp shard " + gradShard);
    }
    if (tensor != null) return tensorParallelShardedNorm(store, shard, grad);
    long total = layout.wholeNumel(), chunk = Ops.NORM_CHUNK;
    int chunks = Math.toIntExact((total + chunk - 1) / chunk), size = dp.size(), me = dp.rank();
    long[] numel = new long[layout.stages()];
    for (int t = 0; t < numel.length; t++) numel[t] = stageNumel(t);
    if (numel[stage] != store.numel()) {
      throw new IllegalStateException("stage " + stage + "'s store holds " + store.numel() + " elements, the layout " + numel[stage]);
    }
    float[] partials = new float[chunks];
    try (Tensor g = grad.view(grad.numel())) {
      for (int j = 0; j < chunks; j++) {
        long cs = j * chunk, ce = Math.min(total, cs + chunk);
        int t0 = stageAt(cs);
        long o0 = cs - layout.wholeRange(t0).start();
        int q0 = partOwner(o0, numel[t0], size);
        boolean owner = stage == t0 && me == q0;
        if (ce <= layout.wholeRange(t0).end() && ce - layout.wholeRange(t0).start() <= Communicator.partStart(numel[t0], q0 + 1, size)) {
          if (owner) {  // the whole chunk is in this rank's shard
            try (Tensor x = g.slice(0, o0 - shard.start(), o0 + (ce - cs) - shard.start())) {
              partials[j] = Ops.sumSquaresPartials(x)[0];
            }
          }
          continue;
        }
        try (Tensor whole = owner ? Tensor.empty(DType.F32, Device.CPU, ce - cs) : null) {
          for (int t = t0; t < layout.stages(); t++) {
            Range r = layout.wholeRange(t);
            long a = Math.max(cs, r.start()), b = Math.min(ce, r.end());
            if (a >= b) continue;
            if (t == stage) {
              Range local = new Range(a - r.start(), b - r.start());
              // this stage's piece of the chunk, from its dp ranks in order, on dp rank q0
              try (Tensor part = me != q0 ? null : owner ? whole.slice(0, a - cs, b - cs)
                  : Tensor.empty(DType.F32, Device.CPU, b - a)) {
                DataParallel.collect(dp, numel[t], shard, g, local, q0, part);
                if (me == q0 && !owner) comm.send(part, t0);
              }
            } else if (owner) {
              try (Tensor dst = whole.slice(0, a - cs, b - cs)) {
                comm.recv(dst, t);
              }
            }
          }
          if (owner) partials[j] = Ops.sumSquaresPartials(whole)[0];
        }
      }
    }
    // each partial is non-zero on one rank only: the sums over the dp group and the pipeline are that partial's bits
    try (Tensor p = Tensor.of(partials, chunks)) {
      dp.allReduceSum(p);
      comm.allReduceSum(p);
      partials = p.toFloatArray();
    }
    double sum = 0;
    for (float x : partials) sum += x;
    return (float) Math.sqrt(sum);
  }

  /** The length of stage {@code t}'s flat store (a tied head's copy of the embedding included). */
  private long stageNumel(int t) {
    List<dev.athanor.params.ParamSpec> specs = new ArrayList<>();
    layout.config().parameterUnits(layout.stage(t)).values().forEach(specs::addAll);
    return ParameterStore.layoutNumel(specs);
  }

  /** The part (of {@code parts} over {@code n} elements, {@link Communicator#partStart}) holding element {@code e}. */
  private static int partOwner(long e, long n, int parts) {
    for (int r = 0; r < parts; r++) if (e < Communicator.partStart(n, r + 1, parts)) return r;
    throw new IllegalArgumentException("element " + e + " is outside " + n);
  }

  /**
   * Under tensor parallelism: the stage's terms of the norm ({@link TensorParallelism#squaredSums}, over the tp group;
   * the last stage's copy of a tied embedding not counted), summed over the pipeline group where each term is non-zero
   * on one stage only, then added in the whole model's order ({@link TensorParallelism#norm}).
   */
  private float tensorParallelNorm(ParameterStore store, Role gradRole) {
    List<String> names = wholeNames();
    boolean copy = layout.holdsTiedCopy(stage);
    float[] terms = tensor.squaredSums(store, gradRole, names, name -> !(copy && name.equals(embedding())));
    try (Tensor t = Tensor.of(terms, terms.length)) {
      comm.allReduceSum(t);
      terms = t.toFloatArray();
    }
    return tensor.norm(names, terms);
  }

  /**
   * ZeRO 2 under tensor parallelism: {@link #tensorParallelNorm}'s bits from the dp shards. The stage's terms (the last
   * stage's copy of a tied embedding not counted) are formed per parameter over the dp group ({@link
   * DataTensorParallel#shardTerms}: a parameter cut by a shard boundary assembled on the dp rank holding its first
   * element, the terms summed over dp), the split ones summed over the tp group ({@link TensorParallelism#sumSplit}),
   * then over the pipeline, where each term is non-zero on one stage only, and added in the whole model's order.
   */
  private float tensorParallelShardedNorm(ParameterStore store, Range shard, Tensor grad) {
    boolean copy = layout.holdsTiedCopy(stage);
    java.util.function.Predicate<String> counted = name -> !(copy && name.equals(embedding()));
    float[] local = DataTensorParallel.shardTerms(dp, store, shard, grad, counted);
    List<String> names = wholeNames();
    float[] terms = new float[names.size()];
    List<ParameterStore.Param> params = store.list();
    for (int i = 0; i < params.size(); i++) terms[names.indexOf(params.get(i).name())] = local[i];
    tensor.sumSplit(store, names, counted, terms);
    try (Tensor t = Tensor.of(terms, terms.length)) {
      comm.allReduceSum(t);
      terms = t.toFloatArray();
    }
    return tensor.norm(names, terms);
  }

  /** The whole model's parameter names, in its flat layout's order. */
  private List<String> wholeNames() {
    List<String> names = new ArrayList<>();
    layout.config().parameterUnits(Stage.whole(layout.config())).values().forEach(u -> u.forEach(p -> names.add(p.name())));
    return names;
  }

  private int stageAt(long wholeIndex) {
    for (int t = 0; t < layout.stages(); t++) if (wholeIndex < layout.wholeRange(t).end()) return t;
    throw new IllegalArgumentException("element " + wholeIndex + " is outside the model's " + layout.wholeNumel());
  }

  /**
   * The losses live on the last stage: it broadcasts them to the group; with several pipelines they are then gathered
   * in the global micro-batch order ({@link DataParallel#gatherLosses}).
   */
  @Override
  public float[] gatherLosses(float[] local) {
    float[] mine = local;
    if (layout.stages() > 1) {
      try (Tensor t = Tensor.of(local, local.length)) {
        comm.broadcast(t, layout.stages() - 1);
        mine = t.toFloatArray();
      }
    }
    return replicas == null ? mine : replicas.gatherLosses(mine);
  }

  // ------------------------------------------------------------------ the whole model

  /**
   * Gathers every stage's weights into a whole model on stage 0 (a collective over the group; the others return null
   * after sending theirs), e.g. to save it. The caller closes the returned model. Under tensor parallelism each stage
   * first gathers its parts on its tp rank 0 (a collective over the tp group), and the tp ranks 0 of the stages put
   * the whole model together on stage 0; the other tp ranks return null.
   */
  public Transformer gatherWhole() {
    Map<String, Tensor> parts = tensor == null ? null : TensorParallelism.gatherWeights(model, tp);
    try {
      if (tensor != null && tp.rank() != 0) return null;
      return gatherWhole(parts);
    } finally {
      if (parts != null) parts.values().forEach(Tensor::close);
    }
  }

  /** {@link #gatherWhole()} of this stage's whole FP32 weights {@code weights} (null: its masters). */
  private Transformer gatherWhole(Map<String, Tensor> weights) {
    ParameterStore store = model.parameters();
    if (!first) {
      for (ParameterStore.Param p : store.list()) {
        if (layout.holdsTiedCopy(stage) && p.name().equals(embedding())) continue;
        comm.send(weights == null ? p.master() : weights.get(p.name()), 0);
      }
      return null;
    }
    Transformer whole = new Transformer(layout.config(), model.device(), model.computeDtype());
    try {
      for (ParameterStore.Param p : store.list()) {
        whole.loadWeight(p.name(), weights == null ? p.master() : weights.get(p.name()));
      }
      for (int t = 1; t < layout.stages(); t++) {
        for (var spec : layout.config().parameterUnits(layout.stage(t)).values().stream().flatMap(List::stream).toList()) {
          if (layout.holdsTiedCopy(t) && spec.name().equals(embedding())) continue;
          try (Tensor w = Tensor.empty(DType.F32, Device.CPU, spec.shape())) {
            comm.recv(w, t);
            whole.loadWeight(spec.name(), w);
          }
        }
      }
      return whole;
    } catch (RuntimeException e) {
      whole.close();
      throw e;
    }
  }
}
