"""Interventional dSprites: the same priors on a convolutional VAE."""
