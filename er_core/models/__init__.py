"""Networks of a trial: backbones, heads, student network, EMA teacher.

``build_network`` builds the student its objective declares (``er_core.objectives``). SwAV's queue
and DeepCluster-v2's memory bank are recipe state of their objectives
(:mod:`er_core.objectives.memory`), re-exported here.
"""

from er_core.models.backbones import BACKBONES, ConvNet, build_backbone
from er_core.models.heads import MLP, NetworkOutput, Prototypes, SSLNetwork, build_network
from er_core.models.teacher import EMATeacher, ema_momentum
from er_core.objectives.memory import EmbeddingQueue, MemoryBank, effective_queue_length

__all__ = ["BACKBONES", "ConvNet", "build_backbone", "MLP", "NetworkOutput", "Prototypes", "SSLNetwork",
           "build_network", "EMATeacher", "MemoryBank", "ema_momentum",
           "EmbeddingQueue", "effective_queue_length"]
