"""Does a data-parallel trial stopped by Tune leave its placement group (resources) behind?"""
import sys, time, json
sys.path.insert(0, ".")  # run from the repository root
import ray
from ray import tune
from er_core.config import TrialConfig
from er_tune.data_parallel import data_parallel_trial

def trial(config):
    data_parallel_trial(config, cpu=0.49, gpu=0.0, max_failures=0)

config = TrialConfig(method="simclr", variant="er", image_size=16, train_size=32, eval_size=16, batch_size=16,
                     epochs=3, warmup_epochs=1, backbone="convnet", projector_dim=16, projector_hidden_dim=32,
                     knn_bank_size=16, knn_k=5, world_size=2)
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
t0 = time.time()
tuner = tune.Tuner(tune.with_resources(trial, {"cpu": 0.01}), param_space=config.to_dict(),
                   run_config=tune.RunConfig(name="pg", storage_path="/tmp/stopped_trial_resources", verbose=0,
                                             stop={"training_iteration": 1}))
res = tuner.fit()
print("fit done", time.time() - t0, res[0].metrics.get("epoch"), flush=True)
for i in range(40):
    print(round(time.time() - t0, 1), ray.available_resources().get("CPU"), flush=True)
    time.sleep(1)
from ray.util import placement_group_table
print(json.dumps({k: v["state"] for k, v in placement_group_table().items()}))
ray.shutdown()
