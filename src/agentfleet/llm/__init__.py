"""The model: the embedded CPU model (assembled, verified, served by llama.cpp on loopback) and
the endpoint a command uses (GPT_OSS_URL, or the embedded model for the command's duration)."""
