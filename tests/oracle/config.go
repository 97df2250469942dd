package main

import (
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"

	recommender_config "k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/config"
	"k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/logic"
	"k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/model"
	"k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/routines"
)

// gcInterval is routines.aggregateContainerStateGCInterval (unexported upstream): the
// recommender garbage-collects expired aggregates at most once an hour.
const gcInterval = time.Hour

// recommenderSetup is what routines.NewRecommenderController builds from the recommender's
// flags, here from their defaults (config.DefaultRecommenderConfig, the values the flags
// start from), so no default is restated in this program.
type recommenderSetup struct {
	podResources   logic.PodResourceRecommender
	format         logic.RecommendationFormat
	postProcessors []routines.RecommendationPostProcessor
}

func newRecommenderSetup() recommenderSetup {
	cfg := recommender_config.DefaultRecommenderConfig()
	// Package-level state read by model.NewAggregateContainerState: set it exactly as
	// NewRecommenderController does instead of relying on the lazy default.
	model.InitializeAggregationsConfig(model.NewAggregationsConfig(
		cfg.MemoryAggregationInterval,
		cfg.MemoryAggregationIntervalCount,
		cfg.MemoryHistogramDecayHalfLife,
		cfg.CpuHistogramDecayHalfLife,
		cfg.OOMBumpUpRatio,
		cfg.OOMMinBumpUp,
	))

	var postProcessors []routines.RecommendationPostProcessor
	if cfg.PostProcessorCPUasInteger {
		postProcessors = append(postProcessors, &routines.IntegerCPUPostProcessor{})
	}
	globalMaxAllowed := corev1.ResourceList{} // initGlobalMaxAllowed: empty for unset flags
	if !cfg.MaxAllowedCPU.IsZero() {
		globalMaxAllowed[corev1.ResourceCPU] = cfg.MaxAllowedCPU.Quantity
	}
	if !cfg.MaxAllowedMemory.IsZero() {
		globalMaxAllowed[corev1.ResourceMemory] = cfg.MaxAllowedMemory.Quantity
	}
	postProcessors = append(postProcessors, routines.NewCappingRecommendationProcessor(globalMaxAllowed))

	return recommenderSetup{
		podResources: logic.CreatePodResourceRecommender(logic.RecommendationConfig{
			SafetyMarginFraction:       cfg.SafetyMarginFraction,
			PodMinCPUMillicores:        cfg.PodMinCPUMillicores,
			PodMinMemoryMb:             cfg.PodMinMemoryMb,
			TargetCPUPercentile:        cfg.TargetCPUPercentile,
			LowerBoundCPUPercentile:    cfg.LowerBoundCPUPercentile,
			UpperBoundCPUPercentile:    cfg.UpperBoundCPUPercentile,
			ConfidenceIntervalCPU:      cfg.ConfidenceIntervalCPU,
			TargetMemoryPercentile:     cfg.TargetMemoryPercentile,
			LowerBoundMemoryPercentile: cfg.LowerBoundMemoryPercentile,
			UpperBoundMemoryPercentile: cfg.UpperBoundMemoryPercentile,
			ConfidenceIntervalMemory:   cfg.ConfidenceIntervalMemory,
		}),
		format: logic.RecommendationFormat{
			HumanizeMemory:     cfg.HumanizeMemory,
			RoundCPUMillicores: cfg.RoundCPUMillicores,
			RoundMemoryBytes:   cfg.RoundMemoryBytes,
		},
		postProcessors: postProcessors,
	}
}

// maxUnixSeconds keeps t * 1e6 below 2^53, where float64 still holds every microsecond.
const maxUnixSeconds = 9e9

// unixTime converts float unix seconds to a time, rounded to the microsecond: a float64 near
// today's epoch resolves about 0.24 µs, so microsecond timestamps (a polars Datetime's default
// unit) survive the trip through JSON exactly, and float noise below that is dropped.
func unixTime(seconds float64) (time.Time, bool) {
	if math.IsNaN(seconds) || math.Abs(seconds) > maxUnixSeconds {
		return time.Time{}, false
	}
	return time.UnixMicro(int64(math.Round(seconds * 1e6))).UTC(), true
}
