/**
 * Training data as token streams: llm.c token shards ({@link dev.athanor.io.data.TokenShard},
 * {@link dev.athanor.io.data.TokenShardWriter}), an ordered set of shards read as one stream
 * ({@link dev.athanor.io.data.TokenDataset}), text corpora tokenized once into cached shards
 * ({@link dev.athanor.io.data.TextCorpus}), batches for next-token prediction
 * ({@link dev.athanor.io.data.DataLoader}) and token-id files given on a command line
 * ({@link dev.athanor.io.data.TokenFiles}).
 */
package dev.athanor.io.data;
