"""Ray Train: distributed sampled-softmax training of the recall model."""
