"""Networks of a trial: backbones, heads, student network, EMA teacher, memory bank."""

from er_tune.models.backbones import BACKBONES, ConvNet, build_backbone
from er_tune.models.heads import MLP, NetworkOutput, Prototypes, SSLNetwork, build_network
from er_tune.models.queue import EmbeddingQueue, effective_queue_length
from er_tune.models.teacher import EMATeacher, MemoryBank, ema_momentum

__all__ = ["BACKBONES", "ConvNet", "build_backbone", "MLP", "NetworkOutput", "Prototypes", "SSLNetwork",
           "build_network", "EMATeacher", "MemoryBank", "ema_momentum",
           "EmbeddingQueue", "effective_queue_length"]
