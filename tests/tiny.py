"""Tiny configurations shared by the tests that need a trained run quickly."""

TINY_GAN = [
    "data.limit=128",
    "model.latent_dim=16",
    "model.generator.ngf=8",
    "model.discriminator.ndf=8",
    "train.batch_size=16",
    "train.steps=2",
    "train.device=cpu",
    "train.progress=false",
    "train.sample_grid=10",
    "eval.at_end=false",
]

# Overrides of the `cyclegan-digits` preset (3-channel B, no identity loss).
TINY_CYCLEGAN = [
    "data.limit=64",
    "model.generator.name=resnet_6blocks",
    "model.generator.ngf=4",
    "model.discriminator.ndf=8",
    "train.batch_size=4",
    "train.device=cpu",
    "train.progress=false",
    "train.log_every=2",
    "train.max_seconds=null",
    "eval.num_samples=16",
    "cycle.preview=4",
]
