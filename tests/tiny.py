"""A tiny `dcgan-mnist` configuration shared by the tests that need a trained run quickly."""

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
