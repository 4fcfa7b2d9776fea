"""SAE features: sparse autoencoders trained or loaded per layer, and the features that tell two conditions apart."""
