"""The Great Expectations suite (`suite`), its HTML report (`report`) and the gate in front of training (`gate`)."""
