"""Ingest: stream FASTA(.gz) files into HDF5 shards of the training pool plus a held-out split.

Records are routed by the digest of their normalised sequence (bioprune.hashing.route_digests), so
exact duplicates always meet in one shard and are collapsed there; ids are checked per id bucket.
Memory is bounded by block buffers and, per gather job, compact numeric arrays of one shard; the
sequences themselves are never all held. Modules: fasta (reading, batch normalisation), ranges
(byte ranges of a large uncompressed file, one route job each), route (scatter one input file or
range), dedupe (gather and dedupe one shard, check one id bucket), pipeline (orchestration), read
(reading shards back).
"""
from bioprune.ingest.fasta import check_fasta, iter_fasta, read_batches
from bioprune.ingest.dedupe import check_ids, gather
from bioprune.ingest.pipeline import IngestOptions, IngestStats, check_counts, expand_inputs, gather_shard, ingest, shard_attrs, summarise
from bioprune.ingest.read import SHARD_DATASETS, iter_shard, load_sequences, read_shard, shard_molecule
from bioprune.ingest.route import route_file

__all__ = ["SHARD_DATASETS", "IngestOptions", "IngestStats", "check_counts", "check_fasta", "check_ids", "expand_inputs", "gather",
           "gather_shard", "ingest", "iter_fasta", "iter_shard", "load_sequences", "read_batches", "read_shard", "route_file",
           "shard_attrs", "shard_molecule", "summarise"]
