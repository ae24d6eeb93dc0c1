"""The PyTorch backend: generated standalone ``nn.Module`` source."""
