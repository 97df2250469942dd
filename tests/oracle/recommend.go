package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	autoscaling "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	vpa_types "k8s.io/autoscaler/vertical-pod-autoscaler/pkg/apis/autoscaling.k8s.io/v1"
	"k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/logic"
	"k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/model"
	"k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/routines"
	controllerfetcher "k8s.io/autoscaler/vertical-pod-autoscaler/pkg/target/controller_fetcher"
)

// Every case is one workload in its own cluster state: one VPA, pods that all carry the same
// labels (so the recommender keeps one aggregate per container name), one Deployment.
const (
	namespace    = "default"
	workloadName = "workload"
)

var podLabels = labels.Set{"app": workloadName}

type sampleRow struct {
	Pod       string  `json:"pod"`
	Container string  `json:"container"`
	T         float64 `json:"t"`
	CPU       float64 `json:"cpu"`
	Memory    float64 `json:"memory"`
}

type oomRow struct {
	Pod       string  `json:"pod"`
	Container string  `json:"container"`
	T         float64 `json:"t"`
	Memory    float64 `json:"memory"`
}

type caseInput struct {
	Name       string      `json:"name"`
	Containers []string    `json:"containers"`
	Samples    []sampleRow `json:"samples"`
	OOMs       []oomRow    `json:"ooms"`
}

type caseOutput struct {
	Name string `json:"name"`
	// Upstream's own status type, so the JSON is what the recommender writes to
	// status.recommendation.containerRecommendations.
	Recommendations []vpa_types.RecommendedContainerResources `json:"recommendations"`
}

func recommendCommand(stdin io.Reader, stdout io.Writer) error {
	decoder := json.NewDecoder(stdin)
	decoder.DisallowUnknownFields()
	var input struct {
		Cases []caseInput `json:"cases"`
	}
	if err := decoder.Decode(&input); err != nil {
		return fmt.Errorf("reading the cases from stdin: %w", err)
	}
	setup := newRecommenderSetup()
	output := struct {
		Cases []caseOutput `json:"cases"`
	}{Cases: make([]caseOutput, 0, len(input.Cases))}
	for i, c := range input.Cases {
		recommendations, err := recommendCase(c, setup)
		if err != nil {
			return fmt.Errorf("case %d (%q): %w", i, c.Name, err)
		}
		output.Cases = append(output.Cases, caseOutput{Name: c.Name, Recommendations: recommendations})
	}
	return json.NewEncoder(stdout).Encode(output)
}

// recommendCase replays one case through a model.ClusterState, the recommender's model, and
// computes the recommendation as routines.processVPAUpdate does, as of the case's last time.
func recommendCase(c caseInput, setup recommenderSetup) ([]vpa_types.RecommendedContainerResources, error) {
	events, err := orderEvents(c)
	if err != nil {
		return nil, err
	}
	cluster := model.NewClusterState(0) // zero: this function decides when GC runs (see below)
	vpaObject := vpaFor(events)
	if err := cluster.AddOrUpdateVpa(vpaObject, labels.SelectorFromSet(podLabels)); err != nil {
		return nil, err
	}
	// As LoadPods does before any metric arrives: every pod, with every container of the
	// workload, so each container of the workload has an aggregate under the VPA.
	for _, pod := range podsOf(c) {
		podID := model.PodID{Namespace: namespace, PodName: pod}
		cluster.AddOrUpdatePod(podID, podLabels, corev1.PodRunning)
		for _, container := range c.Containers {
			containerID := model.ContainerID{PodID: podID, ContainerName: container}
			if err := cluster.AddOrUpdateContainer(containerID, nil); err != nil {
				return nil, err
			}
		}
	}

	ctx := context.Background()
	fetcher := existingController{}
	lastGC := time.Unix(0, 0) // NewClusterState's starting point: the first call collects
	var now time.Time
	for _, e := range events {
		// Discarded samples and too-old OOMs are errors upstream too; the recommender logs
		// and ignores them (cluster_feeder.go LoadRealTimeMetrics), and so do we.
		if e.isOOM {
			_ = cluster.RecordOOM(e.container, e.t, e.memory)
		} else {
			_ = cluster.AddSample(sampleWithKey(e.container, e.t, e.cpu, model.ResourceCPU))
			_ = cluster.AddSample(sampleWithKey(e.container, e.t, e.memory, model.ResourceMemory))
		}
		if e.t.After(now) {
			now = e.t
		}
		// The recommender's loop garbage-collects expired aggregates once an hour with
		// now = time.Now(); in a replay, now is the stream's time.
		if now.Sub(lastGC) >= gcInterval {
			cluster.RateLimitedGarbageCollectAggregateCollectionStates(ctx, now, fetcher)
			lastGC = now
		}
	}
	// Recommend as of the last time of the case, with aggregates expired by then removed (as
	// if the hourly collection had just run; live, it may lag by up to an hour).
	cluster.RateLimitedGarbageCollectAggregateCollectionStates(ctx, now, fetcher)

	vpa := cluster.VPAs()[model.VpaID{Namespace: namespace, VpaName: workloadName}]
	resources := setup.podResources.GetRecommendedPodResources(routines.GetContainerNameToAggregateStateMap(vpa))
	recommendation := logic.MapToListOfRecommendedContainerResources(resources, setup.format)
	for _, postProcessor := range setup.postProcessors {
		recommendation = postProcessor.Process(vpaObject, recommendation)
	}
	vpa.UpdateRecommendation(recommendation)
	result := vpa.GetRecommendation().ContainerRecommendations
	if result == nil {
		result = []vpa_types.RecommendedContainerResources{}
	}
	return result, nil
}

func sampleWithKey(container model.ContainerID, t time.Time, amount model.ResourceAmount, resource model.ResourceName) *model.ContainerUsageSampleWithKey {
	return &model.ContainerUsageSampleWithKey{
		Container:            container,
		ContainerUsageSample: model.ContainerUsageSample{MeasureStart: t, Usage: amount, Resource: resource},
	}
}

// vpaFor is the case's VPA object: default policy, targeting the workload's Deployment,
// created at the first event (the creation time only feeds a latency metric).
func vpaFor(events []event) *vpa_types.VerticalPodAutoscaler {
	var created time.Time
	if len(events) > 0 {
		created = events[0].t
	}
	return &vpa_types.VerticalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{
			Name:              workloadName,
			Namespace:         namespace,
			CreationTimestamp: metav1.NewTime(created),
		},
		Spec: vpa_types.VerticalPodAutoscalerSpec{
			TargetRef: &autoscaling.CrossVersionObjectReference{
				APIVersion: "apps/v1",
				Kind:       "Deployment",
				Name:       workloadName,
			},
		},
	}
}

func podsOf(c caseInput) []string {
	seen := map[string]bool{}
	var pods []string
	add := func(pod string) {
		if !seen[pod] {
			seen[pod] = true
			pods = append(pods, pod)
		}
	}
	for _, s := range c.Samples {
		add(s.Pod)
	}
	for _, o := range c.OOMs {
		add(o.Pod)
	}
	return pods
}

// existingController tells the garbage collector that every pod's controller still exists:
// the case's Deployment lives for the whole stream. (Its pods are Running, so they count as
// contributive anyway; the collector asks regardless.)
type existingController struct{}

func (existingController) FindTopMostWellKnownOrScalable(_ context.Context, controller *controllerfetcher.ControllerKeyWithAPIVersion) (*controllerfetcher.ControllerKeyWithAPIVersion, error) {
	return controller, nil
}
