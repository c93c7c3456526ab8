"""accelerate launch -m train.lipsync --config train/configs/generator-tiny.yaml: see train.lipsync.train."""

from shqip_av.config import run_cli
from train.lipsync.train import main

if __name__ == "__main__":
    run_cli(main)
