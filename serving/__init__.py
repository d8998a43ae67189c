"""Batch recall: user vectors, FAISS index, per-user top-K table, evaluation."""
