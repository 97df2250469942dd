package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"time"

	"k8s.io/autoscaler/vertical-pod-autoscaler/pkg/recommender/model"
)

const tripleBytes = 3 * 8

// benchCommand times upstream's ingestion of every (t, cpu, memory) triple into the decaying
// CPU and memory histograms of one AggregateContainerState: its AddSample is the one the
// model calls per sample, with upstream's weights (0.1 per CPU sample, 1.0 per memory peak).
// Decoding the file and converting amounts and times happen before the clock starts.
func benchCommand(path string, stdout io.Writer) error {
	runtime.GOMAXPROCS(1)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(data)%tripleBytes != 0 {
		return fmt.Errorf("%s: %d bytes is not a whole number of float64 triples", path, len(data))
	}
	n := len(data) / tripleBytes
	times := make([]time.Time, n)
	cpu := make([]model.ResourceAmount, n)
	memory := make([]model.ResourceAmount, n)
	for i := range n {
		row := data[i*tripleBytes:]
		seconds := math.Float64frombits(binary.LittleEndian.Uint64(row))
		t, ok := unixTime(seconds)
		if !ok {
			return fmt.Errorf("triple %d: time %v out of range", i, seconds)
		}
		times[i] = t
		cpu[i] = model.CPUAmountFromCores(math.Float64frombits(binary.LittleEndian.Uint64(row[8:])))
		memory[i] = model.MemoryAmountFromBytes(math.Float64frombits(binary.LittleEndian.Uint64(row[16:])))
	}
	newRecommenderSetup() // the aggregations config, as in recommend
	aggregate := model.NewAggregateContainerState()
	runtime.GC()

	start := time.Now()
	for i := range n {
		aggregate.AddSample(&model.ContainerUsageSample{MeasureStart: times[i], Usage: cpu[i], Resource: model.ResourceCPU})
		aggregate.AddSample(&model.ContainerUsageSample{MeasureStart: times[i], Usage: memory[i], Resource: model.ResourceMemory})
	}
	seconds := time.Since(start).Seconds()

	if aggregate.TotalSamplesCount != n {
		return fmt.Errorf("ingested %d CPU samples, expected %d", aggregate.TotalSamplesCount, n)
	}
	rate := 0.0
	if seconds > 0 {
		rate = float64(n) / seconds
	}
	return json.NewEncoder(stdout).Encode(map[string]any{
		"samples": n, "seconds": seconds, "samples_per_s": rate,
	})
}
