"""The same study with the driver's placement-group release switched off (the code before the fix)."""
import sys
sys.path.insert(0, ".")  # run from the repository root
from er_tune import launch
from er_tune.cli import main
launch.StudyRunner._data_parallel_callbacks = lambda self: []
sys.exit(main(["tune", "results/data_parallel_by_hand/asha_study.yaml", "--storage", "/tmp/asha_without"]))
