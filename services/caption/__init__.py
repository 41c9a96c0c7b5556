"""The caption service: preprocessing, BLIP captions and dataset lint."""
