"""Batch recall: user vectors, the sharded FAISS index, the recall channels and the per-user
top-K and similar-item tables."""
